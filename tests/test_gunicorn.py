"""Gunicorn start-up: bad configuration stops the master with one line; good config serves."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gunicorn(env: dict, *options: str, **kwargs) -> subprocess.Popen:
    """gunicorn with our config file; ``None`` in ``env`` removes an inherited variable."""
    merged = {**os.environ, "RUNBOARD_SCHEDULER": "off", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", *options, "wsgi:app"], cwd=ROOT,
        env={k: v for k, v in merged.items() if v is not None}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("env, variable", [
    ({"RUNBOARD_DATABASE_URL": "memory://", "WEB_CONCURRENCY": "2"}, "WEB_CONCURRENCY"),
    ({"RUNBOARD_DATABASE_URL": "oracle://scott@db/x"}, "RUNBOARD_DATABASE_URL"),
    ({"RUNBOARD_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"}, "RUNBOARD_DATABASE_URL"),
    ({"RUNBOARD_RETENTION": "a week"}, "RUNBOARD_RETENTION"),
    ({"RUNBOARD_HEARTBEAT_TIMEOUT": "60"}, "RUNBOARD_HEARTBEAT_TIMEOUT"),
    ({"RUNBOARD_DATABASE_URL": "postgresql+psycopg://postgres:hunter2@127.0.0.1:port/x"},
     "RUNBOARD_DATABASE_URL"),
    ({"RUNBOARD_DATABASE_URL": "sqlite:///"}, "RUNBOARD_DATABASE_URL"),
    ({"RUNBOARD_DATABASE_URL": "sqlite:////no/such/directory/runboard.db"}, "RUNBOARD_DATABASE_URL"),
    ({"RUNBOARD_RUNNER_THREADS": "0"}, "RUNBOARD_RUNNER_THREADS"),
    ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS"),
    ({"GUNICORN_THREADS": "many"}, "GUNICORN_THREADS"),
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
])
def test_bad_configuration_stops_the_master_with_one_clear_line(env, variable):
    process = _gunicorn(env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"runboard: configuration error: {variable}: ")
    assert "Traceback" not in stderr and "hunter2" not in stderr


def test_workers_given_on_the_command_line_are_checked_against_the_memory_store():
    """``-w`` is only known once gunicorn has parsed its arguments, after its first log line."""
    process = _gunicorn({"RUNBOARD_DATABASE_URL": "memory://"}, "-w", "3")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "runboard: configuration error" in line]
    assert errors == [errors[0]] and errors[0].startswith("runboard: configuration error: --workers: ")


def test_a_worker_that_cannot_load_the_app_halts_gunicorn_instead_of_looping():
    """Even without our config file's master check, wsgi.py exits with gunicorn's
    APP_LOAD_ERROR, which makes the master stop rather than respawn the worker."""
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{_free_port()}",
                                "wsgi:app"], cwd=ROOT, env={**os.environ, "RUNBOARD_RETENTION": "later"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 4
    assert stderr.count("runboard: configuration error: RUNBOARD_RETENTION: ") == 1


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
def test_gunicorn_serves_healthz_with_the_default_worker_count(url_kind, tmp_path):
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'served.db'}" if url_kind == "sqlite" else "memory://"
    process = _gunicorn({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_BIND": f"127.0.0.1:{port}",
                         "WEB_CONCURRENCY": None, "GUNICORN_THREADS": "2"})
    try:
        assert _poll_health(port, process, time.monotonic() + 60) == {"status": "ok", "store": url_kind}
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue                    # the process ended while we looked
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _wait_for_log(path: Path, text: str, process: subprocess.Popen, deadline: float) -> None:
    while text not in path.read_text():
        assert process.poll() is None and time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker pids from /proc")
def test_a_ttin_signal_does_not_give_the_memory_store_a_second_worker(tmp_path):
    port, log = _free_port(), tmp_path / "gunicorn.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "wsgi:app"], cwd=ROOT,
            env={**os.environ, "RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off",
                 "RUNBOARD_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"},
            stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        _poll_health(port, process, deadline)
        process.send_signal(signal.SIGTTIN)
        # The master handles queued signals in order: once WINCH is logged, TTIN is done.
        process.send_signal(signal.SIGWINCH)
        _wait_for_log(log, "Handling signal: winch", process, deadline)
        assert "staying at 1 worker" in log.read_text()
        assert len(_children(process.pid)) == 1
    finally:
        process.terminate()
        process.wait(timeout=30)
