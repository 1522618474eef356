"""Gunicorn start-up: bad configuration stops the master with one line; good config serves."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gunicorn(env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "wsgi:app"], cwd=ROOT,
        env={**os.environ, "RUNBOARD_SCHEDULER": "off", **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("env, variable", [
    ({"RUNBOARD_DATABASE_URL": "memory://", "WEB_CONCURRENCY": "2"}, "WEB_CONCURRENCY"),
    ({"RUNBOARD_DATABASE_URL": "oracle://scott@db/x"}, "RUNBOARD_DATABASE_URL"),
    ({"RUNBOARD_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"}, "RUNBOARD_DATABASE_URL"),
    ({"RUNBOARD_RETENTION": "a week"}, "RUNBOARD_RETENTION"),
    ({"RUNBOARD_HEARTBEAT_TIMEOUT": "60"}, "RUNBOARD_HEARTBEAT_TIMEOUT"),
    ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS"),
])
def test_bad_configuration_stops_the_master_with_one_clear_line(env, variable):
    process = _gunicorn(env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"runboard: configuration error: {variable}: ")
    assert "Traceback" not in stderr


def test_a_malformed_web_concurrency_still_stops_the_master():
    """Gunicorn parses WEB_CONCURRENCY itself before our config file runs; it still exits
    non-zero at once (a known deviation from "one line": its own ValueError is printed)."""
    process = _gunicorn({"WEB_CONCURRENCY": "lots"})
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "WEB_CONCURRENCY" in stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _poll_health(port: int, process: subprocess.Popen, deadline: float) -> dict:
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.1)   # polling a server that is still booting, bounded by the deadline
    raise AssertionError("gunicorn did not answer /healthz in time")


@pytest.mark.parametrize("url_kind", ["sqlite", "memory"])
def test_gunicorn_serves_healthz(url_kind, tmp_path):
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'served.db'}" if url_kind == "sqlite" else "memory://"
    process = _gunicorn({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_BIND": f"127.0.0.1:{port}",
                         "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2"})
    try:
        assert _poll_health(port, process, time.monotonic() + 60) == {"status": "ok", "store": url_kind}
    finally:
        process.terminate()
        process.communicate(timeout=30)
