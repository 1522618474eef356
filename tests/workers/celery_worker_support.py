"""Real ``celery --app wsgi:celery_app worker`` processes beside a real gunicorn.

A worker is started from the project root with the server's environment (so the same
store, broker, queue and kinds), in its own process group so a test can SIGKILL all of
it; ``wait_ready`` polls ``GET /workers`` for its hostname.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from gunicorn_support import ROOT, alive, children, reap, wait_for

HERE = Path(__file__).resolve().parent
#: Celery's ``%h``.
HOST = socket.gethostname()


def celery_env(server_env: dict, broker: str, queue: str, **extra: str) -> dict:
    """The server's environment with the Celery executor, and this folder importable."""
    path = os.pathsep.join(p for p in (str(HERE), server_env.get("PYTHONPATH", "")) if p)
    return {**server_env, "RUNBOARD_EXECUTOR": "celery", "RUNBOARD_CELERY_BROKER_URL": broker,
            "RUNBOARD_CELERY_QUEUE": queue, "RUNBOARD_KINDS": "celery_kinds:KINDS", "PYTHONPATH": path, **extra}


class Worker:
    def __init__(self, env: dict, workdir: Path, name: str, *, concurrency: int = 2):
        self.env, self.name, self.concurrency = env, name, concurrency
        self.log_path = workdir / f"celery-{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def hostname(self) -> str:
        return f"{self.name}@{HOST}"

    def start(self) -> "Worker":
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "--app", "wsgi:celery_app", "worker", "--loglevel", "INFO",
                 "--concurrency", str(self.concurrency), "--hostname", f"{self.name}@%h",
                 "--without-mingle", "--without-gossip"],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_ready(self, server, timeout: float = 60.0) -> dict:
        """Until the worker's main process has recorded itself in the registry."""
        def registered():
            assert self.process.poll() is None, f"celery worker exited with {self.process.returncode}:\n{self.log_text()}"
            status, body = server.call("GET", "/api/v1/workers")
            mine = [w for w in body.get("workers", []) if w["worker_id"] == self.hostname and w["pid"] == self.process.pid]
            return mine[0] if status == 200 and mine else None
        return wait_for(registered, timeout, f"celery worker {self.hostname} registered", interval=0.05)

    def pool_pids(self) -> set[int]:
        return children(self.process.pid) if self.process else set()

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM to the main process: Celery's warm shutdown; its exit status."""
        pool = self.pool_pids()
        self.process.send_signal(signal.SIGTERM)
        reap(self.process, lambda: pool, timeout=timeout, what=f"celery worker {self.name}")
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to every process of the worker at once: a machine lost mid-job."""
        pool = self.pool_pids()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        wait_for(lambda: not any(alive(pid) for pid in pool), 10, f"celery worker {self.name}'s pool gone")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()



class Workers:
    """The Celery workers of one deployment, by name; a test asks for the ones it needs."""

    def __init__(self, server, workdir: Path):
        self.server, self.workdir = server, workdir
        self.env = server.env
        self.running: dict[str, Worker] = {}

    def only(self, *names: str, env: dict | None = None) -> list[Worker]:
        """Exactly these workers running (started and registered), every other one stopped."""
        for name in [n for n in self.running if n not in names]:
            self.running.pop(name).stop()
        started = []
        for name in names:
            worker = self.running.get(name)
            if worker is None or worker.process.poll() is not None:
                worker = self.running[name] = Worker({**self.env, **(env or {})}, self.workdir, name).start()
                started.append(worker)
        for worker in started:
            worker.wait_ready(self.server)
        return [self.running[name] for name in names]

    def by_hostname(self, hostname: str) -> Worker:
        return next(w for w in self.running.values() if w.hostname == hostname)

    def forget(self, worker: Worker) -> None:
        self.running = {n: w for n, w in self.running.items() if w is not worker}

    def stop_all(self) -> None:
        for worker in self.running.values():
            worker.stop()
        self.running = {}
