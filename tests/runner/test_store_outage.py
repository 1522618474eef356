"""A store that is briefly unreachable delays a running job's reports but neither fails
the job nor loses them: real jobs on the real runner, through real outages.

PostgreSQL: the test's own database stops accepting connections and every session on it
is terminated (what a restart or a failover does to clients), then comes back; other test
runs on the same server are untouched.  SQLite: the database and its WAL are made
immutable (``chattr +i``) — the kernel then refuses every write, root's too, so the store's
writes fail with a real ``sqlite3.OperationalError`` ("disk I/O error") while reads go on;
nothing depends on the store's busy timeout.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import threading

import pytest

from runner_support import AUTH, finished, make_app, runner_of, wait_for
from job_support import AnyParams
from webapp.runner import JobKind
from webapp.runner.retry import is_store_failure
from webapp.store import close_repository


class Chatty:
    """A job that logs, reports progress and meta at its own pace until released."""

    def __init__(self):
        self.written = 0
        self.released = threading.Event()

    def kind(self) -> JobKind:
        def run(context, params):
            n = 0
            while not self.released.wait(0.002):
                context.log("info", f"line {n}", n=n)
                context.progress(current=n, total=n + 1, stage={"name": "chatting", "n": n})
                context.meta(chat={"written": n + 1})
                n += 1
                self.written = n
            return {"written": n}
        return JobKind("chatty", run, AnyParams)


def finished_once_reachable(repository, session_id):
    """The session once terminal; None while the test's own connection still meets the
    outage (a connection the server dropped fails its next call)."""
    try:
        session = repository.get(session_id)
    except Exception as exc:
        if not is_store_failure(exc):
            raise
        return None
    return session if session.state.is_terminal else None


def run_through(app, outage, caplog):
    """Start the job, take the store away while it writes, bring it back, check everything."""
    caplog.set_level(logging.WARNING, logger="runboard.runner")
    job = Chatty()
    runner_of(app).kinds.register(job.kind())
    client = app.test_client()
    session_id = client.post("/api/v1/sessions", json={"kind": "chatty"}, headers=AUTH).json["id"]
    wait_for(lambda: job.written >= 50)
    with outage():
        wait_for(lambda: any("store unreachable" in r.getMessage() and session_id in r.getMessage()
                             for r in caplog.records), timeout=30)
        during = job.written
        wait_for(lambda: job.written >= during + 1000, timeout=30)   # the job runs on meanwhile
    job.released.set()
    repository = app.extensions["runboard"]
    wait_for(lambda: finished_once_reachable(repository, session_id), timeout=60)
    done = finished(client, session_id)
    assert done["state"] == "completed" and done["error"] is None, done
    written = done["result"]["written"]
    entries = list(repository.iter_logs(session_id))
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].message.startswith("started by ")
    assert [e.message for e in entries[1:]] == [f"line {n}" for n in range(written)]
    assert done["progress"] == {"current": written - 1, "total": written, "percent": 100.0 if written == 1 else
                                round((written - 1) / written * 100, 1),
                                "stage": {"name": "chatting", "n": written - 1}}
    assert done["meta"]["chat"] == {"written": written}


def test_a_postgresql_restart_delays_the_reports_and_loses_none(empty_postgres_url, postgres_admin, caplog):
    name = empty_postgres_url.rsplit("/", 1)[1]

    @contextlib.contextmanager
    def outage():
        postgres_admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            postgres_admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            yield
        finally:
            postgres_admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    app = make_app(empty_postgres_url, RUNBOARD_STOP_GRACE="30s")
    try:
        run_through(app, outage, caplog)
    finally:
        close_repository(app)
        collect_connections_lost_in_the_outage()


def collect_connections_lost_in_the_outage() -> None:
    """Now and then a connect that the server refuses during the outage leaves a psycopg
    connection that no pool owns (most likely a race in SQLAlchemy's connect path; not
    pinned down yet).  It is collected here, so its ResourceWarning is not raised, much
    later, under an unrelated test."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def chattr(flag: str, path) -> subprocess.CompletedProcess:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)


@pytest.fixture
def immutable_files_work(tmp_path):
    probe = tmp_path / "probe"
    probe.touch()
    if shutil.which("chattr") is None or chattr("+i", probe).returncode:
        pytest.skip("chattr +i needs root (CAP_LINUX_IMMUTABLE) and a filesystem that supports it")
    assert chattr("-i", probe).returncode == 0


def test_a_sqlite_database_refusing_writes_delays_the_reports_and_loses_none(
        sqlite_url, tmp_path, immutable_files_work, caplog):
    files = [tmp_path / "runboard.db", tmp_path / "runboard.db-wal"]

    @contextlib.contextmanager
    def outage():
        frozen = []
        try:
            for path in files:
                result = chattr("+i", path)
                assert result.returncode == 0, result.stderr
                frozen.append(path)
            yield
        finally:
            for path in frozen:
                assert chattr("-i", path).returncode == 0

    app = make_app(sqlite_url, RUNBOARD_STOP_GRACE="30s")
    try:
        run_through(app, outage, caplog)
    finally:
        close_repository(app)
