"""Guarantee 5: on SQL stores an acknowledged log entry survives kill -9 and a restart."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from repositories.sql import SqlSessionRepository

ROOT = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent("""
    import sys
    from repositories.sql import SqlSessionRepository
    repo = SqlSessionRepository.from_url(sys.argv[1])
    session_id = sys.argv[2]
    while True:
        result = repo.append_logs(session_id, [{"level": "info", "message": "tick"}] * 10)
        print(result.last_seq, flush=True)   # acknowledged: the commit has returned
""")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'durable.db'}"
    url = request.getfixturevalue("postgres_url")
    repo = SqlSessionRepository.from_url(url)
    repo.create_schema()
    repo.close()
    return url


def test_acknowledged_log_entries_survive_kill_minus_9(store_url):
    repo = SqlSessionRepository.from_url(store_url)
    repo.create_schema()
    session = repo.create(kind="durability", owner="ops@example.com")
    repo.start(session.id)
    repo.close()

    acknowledged = 0
    deadline = time.monotonic() + 60
    with subprocess.Popen([sys.executable, "-c", WRITER, store_url, session.id],
                          stdout=subprocess.PIPE, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}) as writer:
        try:
            while acknowledged < 500 and time.monotonic() < deadline:
                line = writer.stdout.readline()
                if not line:
                    break
                acknowledged = int(line)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
    assert acknowledged >= 500, "the writer never got going"

    reopened = SqlSessionRepository.from_url(store_url)
    try:
        stored = [entry.seq for entry in reopened.iter_logs(session.id)]
        assert len(stored) >= acknowledged
        assert stored == list(range(1, len(stored) + 1))
        assert reopened.get(session.id).log_count == len(stored)
    finally:
        reopened.close()
