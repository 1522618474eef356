"""Real gunicorn servers for runner tests: migrate, start, poll, talk over HTTP, stop.

A server is ``python -m gunicorn -c gunicorn_config.py wsgi:app`` with the project's own
config file; only the access log is redirected (``GUNICORN_CMD_ARGS`` overrides the file),
to a file whose lines start with the serving worker's pid.  Every wait is a poll with a
deadline, and ``finish_stop`` never returns while the master or one of its workers is alive.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "gunicorn-runner-test-admin-token-0123456789"
#: gunicorn's ``%(p)s`` is ``<pid>`` of the worker that served the request.
ACCESS_FORMAT = "%(p)s %(m)s %(U)s %(s)s"
ACCESS_LINE = re.compile(r"^<(?P<pid>\d+)> (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3})$")
FINISHED = ("completed", "failed", "stopped")


def _headers(token: str, data: bytes | None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    return headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)


def children(pid: int) -> set[int]:
    """Live (non-zombie) child processes of ``pid``, read from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue                    # the process ended while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def server_env(url: str, port: int, access_log: Path, *, workers: int, threads: int = 4,
               runner_threads: int = 2) -> dict:
    cmd_args = f"--access-logfile {shlex.quote(str(access_log))} --access-logformat {shlex.quote(ACCESS_FORMAT)}"
    return {**os.environ, "RUNBOARD_DATABASE_URL": url, "RUNBOARD_ADMIN_TOKEN": TOKEN,
            "RUNBOARD_SCHEDULER": "off", "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads),
            "RUNBOARD_RUNNER_THREADS": str(runner_threads), "RUNBOARD_BIND": f"127.0.0.1:{port}",
            "RUNBOARD_HEARTBEAT_TIMEOUT": "2s", "GUNICORN_CMD_ARGS": cmd_args}


def flask_cli(env: dict, *args: str) -> str:
    """``flask --app wsgi …`` with a server's environment; its stdout."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"flask {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


class Server:
    """One gunicorn master; ``start()`` does not wait, ``wait_ready()`` does."""

    def __init__(self, url: str, workdir: Path, name: str, *, workers: int, env: dict | None = None,
                 **options):
        """``env`` adds or overrides variables of the server's environment (and its CLI's)."""
        self.url, self.workers, self.port = url, workers, free_port()
        self.access_log, self.error_log = workdir / f"{name}-access.log", workdir / f"{name}-gunicorn.log"
        self.env = {**server_env(url, self.port, self.access_log, workers=workers, **options), **(env or {})}
        self.process: subprocess.Popen | None = None
        self._stopping: set[int] = set()

    def migrate(self) -> None:
        flask_cli(self.env, "db", "upgrade")

    def start(self) -> "Server":
        with self.error_log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "wsgi:app"], cwd=ROOT,
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def _check_running(self) -> None:
        assert self.process.poll() is None, f"gunicorn exited with {self.process.returncode}:\n{self.log_text()}"

    def worker_pids(self) -> set[int]:
        return children(self.pid)

    def wait_ready(self, timeout: float = 60.0) -> set[int]:
        """Until ``workers`` workers exist and each one's runner has registered itself in
        the store (so its monitor thread runs); their pids.  With the Celery executor no
        job runs in the web processes, and they only have to answer."""
        celery = self.env.get("RUNBOARD_EXECUTOR") == "celery"

        def ready():
            self._check_running()
            pids = self.worker_pids()
            if len(pids) != self.workers:
                return None
            try:
                status, body = self.call("GET", "/api/v1/workers")
            except OSError:
                return None             # still binding or booting
            if celery:
                return pids if status == 200 else None
            registered = {w["pid"] for w in body.get("workers", [])} if status == 200 else set()
            return pids if pids <= registered else None
        return wait_for(ready, timeout, f"gunicorn on port {self.port} with {self.workers} worker(s) ready",
                        interval=0.05)

    # -- HTTP --------------------------------------------------------------------------
    def call(self, method: str, path: str, body=None, *, token: str = TOKEN) -> tuple[int, dict]:
        """One request on a fresh connection (urllib never reuses one); (status, JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers=_headers(token, data))
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.load(exc)

    def connection_to(self, worker: int, attempts: int = 200) -> http.client.HTTPConnection:
        """A kept-alive connection that ``worker`` accepted.  Which worker accepts a new
        connection is the kernel's choice, so open fresh ones (bounded) and ask the access
        log who served each one's probe until ``worker`` did."""
        for _ in range(attempts):
            self._check_running()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            probe = f"/probe/{uuid.uuid4().hex}"
            connection.request("GET", probe)
            with connection.getresponse() as response:
                response.read()
                kept = not response.will_close
            served = wait_for(lambda: self.served_by(probe), 10, f"access log line for {probe}")
            if served == worker and kept:
                return connection
            connection.close()
        raise AssertionError(f"worker {worker} accepted none of {attempts} connections")

    def call_on(self, worker: int, method: str, path: str, body=None, *, token: str = TOKEN) -> tuple[int, dict]:
        """One request served by ``worker``, on a connection it has just accepted."""
        connection = self.connection_to(worker)
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=_headers(token, data))
            with connection.getresponse() as response:
                return response.status, json.load(response)
        finally:
            connection.close()

    def served_by(self, path: str) -> int | None:
        """The pid of the worker that served the (only) request for ``path``."""
        pids = [int(e["pid"]) for e in self.access_entries() if e["path"] == path]
        return pids[0] if pids else None

    def submit(self, kind: str, params: dict, *, token: str = TOKEN, worker: int | None = None) -> dict:
        """POST a session; to ``worker`` if given (the job then runs on that worker)."""
        body = {"kind": kind, "params": params}
        if worker is None:
            status, created = self.call("POST", "/api/v1/sessions", body, token=token)
        else:
            status, created = self.call_on(worker, "POST", "/api/v1/sessions", body, token=token)
        assert status == 201, created
        return created

    def start_job(self, kind: str, params: dict, *, finished: bool = False, **submit) -> dict:
        """Submit a job; the session once it runs with ``meta.runner`` (or, ``finished``, once it ends)."""
        session_id = self.submit(kind, params, **submit)["id"]
        return self.wait_state(session_id, FINISHED) if finished else self.wait_running(session_id)

    def session(self, session_id: str) -> dict:
        status, body = self.call("GET", f"/api/v1/sessions/{session_id}")
        assert status == 200, body
        return body

    def wait_state(self, session_id: str, states, timeout: float = 20.0) -> dict:
        states = (states,) if isinstance(states, str) else tuple(states)

        def reached():
            self._check_running()
            session = self.session(session_id)
            return session if session["state"] in states else None
        return wait_for(reached, timeout, f"session {session_id} in {states}")

    def wait_running(self, session_id: str, timeout: float = 20.0) -> dict:
        """Running, with the runner's identity in meta (buffered, so it lands on the
        job's first flush, a moment after the state)."""
        last = {}

        def reached():
            self._check_running()
            last.update(self.session(session_id))
            assert last["state"] in ("pending", "running"), last
            return last if last["state"] == "running" and "runner" in last["meta"] else None
        try:
            return wait_for(reached, timeout, f"session {session_id} running with meta.runner")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen {last}") from None

    def session_count(self) -> int:
        status, body = self.call("GET", "/api/v1/admin/snapshot")
        assert status == 200, body
        return sum(body["counts"].values())

    def access_entries(self) -> list[dict]:
        if not self.access_log.exists():
            return []
        return [m.groupdict() for m in map(ACCESS_LINE.match, self.access_log.read_text().splitlines()) if m]

    # -- shutdown ------------------------------------------------------------------------
    def stop(self) -> None:
        self.begin_stop()
        self.finish_stop()

    def begin_stop(self) -> None:
        """SIGINT: gunicorn's quick shutdown, which still runs the ``worker_exit`` hook (the
        graceful SIGTERM path is a test's subject, and takes twice as long)."""
        self._stopping = set()
        if self.process is not None and self.process.poll() is None:
            self._stopping = self.worker_pids()
            self.process.send_signal(signal.SIGINT)

    def finish_stop(self) -> None:
        """Wait for the master; should it hang, SIGKILL its workers and it.  Returns only
        once no process of this server is left."""
        if self.process is None:
            return
        workers = self._stopping
        reap(self.process, lambda: workers | self.worker_pids(), timeout=40, what="gunicorn workers")

    @contextlib.contextmanager
    def serving(self):
        """Started and ready inside the block, stopped (every process gone) after it,
        also when it never became ready."""
        self.start()
        try:
            self.wait_ready()
            yield self
        finally:
            self.stop()


def reap(process: subprocess.Popen, pids, *, timeout: float, what: str) -> None:
    """Wait for ``process`` (already asked to stop); past ``timeout``, SIGKILL it and the
    processes ``pids()`` names.  Returns only once none of them is left."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.kill()
        process.wait(timeout=10)
    left = set(pids())
    wait_for(lambda: not any(alive(pid) for pid in left), 10, f"{what} gone")
