"""Helpers for ``runboard.celery``'s tests: a virtualenv with ``client[celery]``, the small
Celery application the worker runs, the worker as a real process, and the stored session of
a task id."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Iterator, Optional

from client_support import make_venv, sessions_of_kind
from gunicorn_support import FINISHED, wait_for

#: The module the worker imports (``-A rbtasks``), written to the worker's directory.
APP_MODULE = "rbtasks"
APP_CODE = '''
import json
import logging
import os
import time
from pathlib import Path

from celery import Celery
from celery.utils.log import get_task_logger

import runboard
from runboard.celery import track_tasks

app = Celery("rbtasks", broker=os.environ["RB_TEST_BROKER"])
app.conf.update(task_default_queue=os.environ["RB_TEST_QUEUE"], task_ignore_result=True,
                broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1)
track_tasks(app, exclude=["rbtasks.untracked*"])
track_tasks(app, exclude=["rbtasks.untracked*"])          # a second call must not connect twice

logger = logging.getLogger(__name__)
task_logger = get_task_logger(__name__)
MARKS = Path(os.environ["RB_TEST_MARKS"])


@app.task(name="rbtasks.Returns Dict")
def returns_dict(x):
    return {"doubled": x * 2, "pid": os.getpid()}


@app.task(name="rbtasks.returns_list")
def returns_list():
    return [1, "two", None]


@app.task(name="rbtasks.returns_set")
def returns_set():
    return {3, 1, 2}


@app.task(name="rbtasks.raises")
def raises():
    logger.info("about to fail")
    raise ValueError("broken input 7")


@app.task(bind=True, name="rbtasks.flaky", max_retries=3)
def flaky(self):
    run = runboard.current_run()
    if self.request.retries == 0:
        logger.info("first attempt, session %s", run.id)
        raise self.retry(countdown=0, exc=RuntimeError("transient"))
    logger.info("second attempt, session %s", run.id)
    return {"attempts": self.request.retries + 1, "session": run.id}


@app.task(name="rbtasks.long")
def long_running():
    run = runboard.current_run()
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline:
        if run.should_stop():
            return {"stopped_at": i}
        i += 1
        run.progress(current=i, step="looping")
        time.sleep(0.05)                       # the task's own pace, not a synchronisation
    return {"gave_up": i}


@app.task(name="rbtasks.overrun", time_limit=1)
def overrun():
    run = runboard.current_run()
    i = 0
    while True:                                # killed at its hard time limit
        i += 1
        run.progress(current=i, step="overrunning")
        time.sleep(0.05)


@app.task(name="rbtasks.logs")
def logs():
    logger.info("hello from the task", extra={"rows": 12})
    task_logger.warning("the task logger says %s", "hi")
    logging.getLogger("celery.worker.consumer").warning("celery machinery, not the task's")
    logging.getLogger("urllib3").warning("the client's machinery, not the task's")
    print("a printed line")


@app.task(name="rbtasks.reports")
def reports():
    run = runboard.current_run()
    run.progress(current=3, total=4, step="fit")
    run.usage(tokens=120, cost=0.5)
    run.meta(engine="v2")
    run.log("info", "explicit entry", n=1)
    return {"ok": True}


@app.task(name="rbtasks.untracked")
def untracked(mark):
    MARKS.joinpath(mark).write_text(json.dumps({"current_run_is_none": runboard.current_run() is None}))
'''


def make_celery_venv(path: Path) -> Path:
    """A virtualenv with ``client[celery]`` (the client, Celery and its Redis transport); its python."""
    return make_venv(path, "celery")


class Worker:
    """``python -m celery -A rbtasks worker`` (prefork, two children) in ``workdir``."""

    def __init__(self, python: Path, workdir: Path, env: dict, queue: str, *, hostname: str = "t1@%h"):
        self.python, self.workdir, self.env, self.queue, self.hostname = python, workdir, env, queue, hostname
        self.log_path = workdir / "worker.log"
        self.process: Optional[subprocess.Popen] = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> "Worker":
        (self.workdir / f"{APP_MODULE}.py").write_text(textwrap.dedent(APP_CODE))
        argv = [str(self.python), "-m", "celery", "-A", APP_MODULE, "worker", "--pool", "prefork",
                "--concurrency", "2", "-Q", self.queue, "--hostname", self.hostname, "--without-gossip",
                "--without-mingle", "--without-heartbeat", "-l", "info"]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def check_running(self) -> None:
        assert self.process.poll() is None, f"the worker exited with {self.process.returncode}:\n{self.log_text()}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready():
            self.check_running()
            return " ready." in self.log_text()
        wait_for(ready, timeout, f"the celery worker ready; its log:\n{self.log_text()}", interval=0.1)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL to its process group if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    @contextlib.contextmanager
    def running(self) -> Iterator["Worker"]:
        self.start()
        try:
            self.wait_ready()
            yield self
        finally:
            self.stop()


def session_for(server, kind: str, task_id: str, *, states=FINISHED, timeout: float = 30.0,
                worker: Optional[Worker] = None) -> dict:
    """The session of ``task_id`` (by ``meta.celery_task_id``) once it is in one of ``states``."""
    states = (states,) if isinstance(states, str) else tuple(states)
    seen = {}

    def found():
        if worker is not None:
            worker.check_running()
        mine = [s for s in sessions_of_kind(server, kind) if s["meta"].get("celery_task_id") == task_id]
        assert len(mine) <= 1, mine
        if mine:
            seen.update(mine[0])
        return mine[0] if mine and mine[0]["state"] in states else None
    try:
        return wait_for(found, timeout, f"the session of task {task_id} ({kind}) in {states}", interval=0.05)
    except AssertionError as exc:
        extra = f"\nworker log:\n{worker.log_text()}" if worker is not None else ""
        raise AssertionError(f"{exc}; last seen {seen or 'nothing'}{extra}") from None
