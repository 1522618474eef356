"""SQLite's one writer across processes (``repositories/sql/writer.py``).

Writers of every process queue on the ``<database>-writer`` file's lock before
``BEGIN IMMEDIATE``, so none of Runboard's own writers should ever meet SQLite's busy
handler: the tests run with a busy timeout of 0, where one writer finding the database
locked fails at once with "database is locked".
"""
from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from repositories.sql import Transactions, make_engine

ROOT = Path(__file__).resolve().parents[2]

#: Each process: 4 threads, each adding 1 to a counter row in 150 read-modify-write
#: transactions, with SQLite's busy handler off.
HAMMER = textwrap.dedent("""
    import sys, threading
    from repositories.sql import engine as engine_module
    from repositories.sql import Transactions, make_engine
    engine_module.BUSY_TIMEOUT_MS = 0
    url, ready, go = sys.argv[1], sys.argv[2], sys.argv[3]
    transactions = Transactions(make_engine(url))
    errors = []
    def add():
        try:
            for _ in range(150):
                with transactions(write=True) as cursor:
                    (value,), = cursor.execute_text("SELECT value FROM counter")
                    cursor.execute_text(f"UPDATE counter SET value = {value + 1}")
        except Exception as exc:
            errors.append(repr(exc))
    open(ready, "w").close()
    import os, time
    while not os.path.exists(go):
        time.sleep(0.001)
    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    print("\\n".join(errors))
    sys.exit(1 if errors else 0)
""")

#: Takes the writer in a thread, forks while that thread holds it, and waits to be killed;
#: the child prints "waiting", then "got it" once it has the writer itself.  (The writer
#: alone: SQLite's own locks do not survive a fork taken inside a transaction.)
HOLD_AND_FORK = textwrap.dedent("""
    import os, sys, threading
    from repositories.sql.writer import SqliteWriter
    writer = SqliteWriter(sys.argv[1])
    held, forever = threading.Event(), threading.Event()
    def hold():
        with writer:
            held.set()
            forever.wait()
    threading.Thread(target=hold, daemon=True).start()
    held.wait()
    if os.fork() == 0:
        print("waiting", flush=True)
        with writer:
            print("got it", flush=True)
        os._exit(0)
    print("parent", flush=True)
    forever.wait()
""")


@pytest.fixture
def counter(sqlite_url):
    engine = make_engine(sqlite_url)
    with Transactions(engine)(write=True) as cursor:
        cursor.execute_text("CREATE TABLE counter (value INTEGER NOT NULL)")
        cursor.execute_text("INSERT INTO counter VALUES (0)")
    yield sqlite_url, engine
    engine.dispose()


def _value(engine) -> int:
    with Transactions(engine)(write=False) as cursor:
        return cursor.execute_text("SELECT value FROM counter")[0][0]


def _environment():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _poll(predicate, deadline_s: float, what: str):
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_writers_of_several_processes_never_meet_the_busy_handler(counter, tmp_path):
    url, engine = counter
    go = tmp_path / "go"
    processes = []
    for index in range(3):
        ready = tmp_path / f"ready-{index}"
        processes.append((ready, subprocess.Popen([sys.executable, "-c", HAMMER, url, str(ready), str(go)],
                                                  cwd=ROOT, env=_environment(), stdout=subprocess.PIPE, text=True)))
    _poll(lambda: all(ready.exists() for ready, _ in processes), 60, "the processes did not start")
    go.touch()
    outputs = [process.communicate(timeout=120)[0] for _, process in processes]
    assert [process.returncode for _, process in processes] == [0, 0, 0], outputs
    assert _value(engine) == 3 * 4 * 150               # no increment lost or doubled


def _lines(stream):
    """The stream's lines as they come, to be taken with a deadline, and the thread
    reading them (it ends at the stream's end)."""
    lines: "queue.Queue[str]" = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.strip()) for line in stream], daemon=True)
    reader.start()
    return lines, reader


def test_a_killed_holder_lets_go_and_a_forked_child_has_a_writer_of_its_own(tmp_path):
    """The parent dies holding the writer in another thread: its child, which inherited
    that thread's lock and the descriptor holding the file's lock, still gets the writer,
    and not before."""
    parent = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(tmp_path / "runboard.db")], cwd=ROOT,
                              env=_environment(), stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines, reader = _lines(parent.stdout)
        assert sorted(lines.get(timeout=60) for _ in range(2)) == ["parent", "waiting"]
        with pytest.raises(queue.Empty):
            lines.get(timeout=0.5)                    # the child waits while the parent holds it
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert lines.get(timeout=30) == "got it"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        reader.join(timeout=30)
        parent.stdout.close()
