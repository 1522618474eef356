"""The ``celery`` executor (SPEC §5): the web app only queues; Celery workers run the jobs.

Flask's documented pattern: one Celery app bound to the Flask app (``wsgi:celery_app``),
whose tasks run inside the Flask app's context, so a worker uses the same settings, kinds
and store as the web app.  A task carries nothing but its session's id (the task id is
the session id too); the worker reads the kind and params from the store and runs the job
with the same ``Runner`` code as the thread pool.

Long jobs shape the configuration: a task is acknowledged only once its job has finished
(late acks, also when its process dies: reject on worker loss, so the broker hands it on),
each worker process reserves one task at a time, and there is no result backend — the
store is the result.  Handing a task on is safe because the start is the claim: a task
delivered twice (a lost worker, a Redis visibility timeout, a duplicate publish) finds its
session no longer pending and does nothing, so a session starts at most once and a
finished one never runs again.  A job whose worker died is failed by the heartbeat sweep.

The worker's main process records the worker in the registry (``GET /workers``) under its
Celery hostname, and on a warm shutdown (SIGTERM) asks its running jobs to stop through
the store, so they end ``stopped`` before it exits.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone

from celery import Celery, Task, signals
from celery.worker import state as worker_state

from repositories.errors import RunboardError, SessionNotFound, ValidationError
from repositories.states import State

from .executor import Executor
from .identity import VERSION, WorkerIdentity, rss_bytes
from .retry import describe, is_store_failure
from .runner import ERROR_LIMIT, Runner, heartbeat_interval

log = logging.getLogger("runboard.runner")
TASK_NAME = "runboard.run_session"
#: How long a web request may spend publishing before the session is failed instead.
#: How soon a task whose session could not be read or started (store down) runs again.
STORE_RETRY_SECONDS = 5
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def make_celery(flask_app, settings) -> Celery:
    """The Celery app bound to ``flask_app``; its one task runs a session."""
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with flask_app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(flask_app.import_name, task_cls=FlaskTask, set_as_current=False)
    celery.conf.update(
        broker_url=settings.celery_broker_url, result_backend=None, task_ignore_result=True,
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_default_queue=settings.celery_queue, task_serializer="json", accept_content=["json"],
        task_publish_retry_policy=PUBLISH_RETRY, broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        # A job keeps running through a broker blip: it reports to the store, not the broker.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return celery


class CeleryExecutor(Executor):
    def __init__(self, flask_app, repository, kinds, settings):
        self.repository, self.kinds, self.settings = repository, kinds, settings
        self.identity = WorkerIdentity.of_this_process()
        self.celery = make_celery(flask_app, settings)
        self._flask_app = flask_app
        self._runners: dict[int, Runner] = {}        # per process: prefork children fork later
        self._lock = threading.Lock()
        self._beat: WorkerBeat | None = None

        @self.celery.task(name=TASK_NAME, bind=True)
        def run_session(task, session_id: str) -> None:
            try:
                self.run(session_id, hostname=task.request.hostname or self.identity.worker_id)
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                # The session could not even be started: try again later rather than ack
                # a task whose session would then wait for ever.
                log.warning("session %s: store unreachable (%s); the task runs again in %ds",
                            session_id, describe(exc), STORE_RETRY_SECONDS)
                raise task.retry(countdown=STORE_RETRY_SECONDS, max_retries=None) from None

        self.task = run_session
        _connect_worker_signals(self)

    # -- the web side --------------------------------------------------------------------
    def submit(self, session_id, kind, params) -> None:
        """Publish the session's task; a broker that cannot take it fails the session now,
        with the reason, instead of leaving it pending for ever."""
        try:
            self.task.apply_async(args=(session_id,), task_id=session_id, queue=self.settings.celery_queue,
                                  retry=True)
        except Exception as exc:                 # noqa: BLE001 - any publish failure strands the session
            reason = describe(exc).replace(self.settings.celery_broker_url or "\0", "(broker)")
            log.error("could not queue session %s on the Celery broker: %s", session_id, reason)
            try:
                self.repository.finish(session_id, State.FAILED,
                                       error=f"could not queue the job on the Celery broker ({reason})"[:ERROR_LIMIT])
            except RunboardError:
                pass                             # stopped or removed meanwhile

    def notify_stop(self, session_id: str) -> bool:
        return False                             # the worker's monitor reads the flag from the store

    def start(self) -> None:
        """Nothing runs in the web process."""

    def shutdown(self, timeout: float = 20.0) -> None:
        with self._lock:
            runner = self._runners.pop(os.getpid(), None)
        if runner is not None:
            runner.shutdown(timeout=timeout)
        if self._beat is not None:
            self._beat.stop()

    # -- the worker side -------------------------------------------------------------------
    def run(self, session_id: str, *, hostname: str) -> None:
        """The task's body: run a still-pending session's job here, else do nothing."""
        try:
            session = self.repository.get(session_id)
        except SessionNotFound:
            log.warning("task for session %s: no such session (removed?); nothing to run", session_id)
            return
        if session.state is not State.PENDING:
            log.info("task for session %s: already %s; this delivery does nothing", session_id, session.state.value)
            return
        kind = self.kinds.get(session.kind)
        try:
            if kind is None:
                raise ValidationError("kind", f"{session.kind!r} is not registered on Celery worker {hostname} "
                                              "(RUNBOARD_KINDS differs from the web app's?)")
            params = self.validate(kind, session.params)
        except ValidationError as exc:
            self._fail_unstarted(session_id, f"{exc.field}: {exc.message}")
            return
        if not self.runner_for(hostname).run_here(session_id, kind, params):
            log.info("task for session %s: started elsewhere first; this delivery does nothing", session_id)

    def runner_for(self, hostname: str) -> Runner:
        """This process's runner, made on its first task (after any fork)."""
        with self._lock:
            runner = self._runners.get(os.getpid())
            if runner is None:
                identity = WorkerIdentity(hostname, self.identity.host, os.getpid(), VERSION,
                                          datetime.now(timezone.utc))
                runner = Runner.configured(self.repository, self.kinds, self.settings, threads=0,
                                           identity=identity, registers=False)
                self._runners[os.getpid()] = runner
            return runner

    def _fail_unstarted(self, session_id: str, error: str) -> None:
        try:
            self.repository.finish(session_id, State.FAILED, error=error[:ERROR_LIMIT])
        except RunboardError:
            pass

    def after_fork(self) -> None:
        """A forked pool process must not share the parent's database connections."""
        from webapp.extensions import db

        with self._flask_app.app_context():
            if "sqlalchemy" in self._flask_app.extensions:
                db.engine.dispose(close=False)

    def worker_ready(self, hostname: str) -> None:
        self._beat = WorkerBeat(self, hostname)
        self._beat.start()

    def warm_shutdown(self, hostname: str) -> None:
        """Ask this worker's running jobs to stop (through the store, like any stop): the
        worker waits for its tasks, and they end ``stopped``."""
        from webapp.services import stop_session

        for request in list(worker_state.active_requests):
            try:
                with self._flask_app.app_context():
                    stop_session(request.id, who=f"{hostname} (warm shutdown)", role="worker")
            except Exception as exc:            # noqa: BLE001 - finished already, or the store is down
                log.warning("could not ask session %s to stop (%s)", request.id, describe(exc))


class WorkerBeat(threading.Thread):
    """The Celery worker's entry in the registry, written from its main process (which
    knows how many tasks run in its pool)."""

    def __init__(self, executor: CeleryExecutor, hostname: str):
        super().__init__(name="runboard-celery-beat", daemon=True)
        self.executor, self.hostname = executor, hostname
        self.interval = heartbeat_interval(executor.settings.heartbeat_timeout)
        self._halt = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.executor.repository.heartbeat_worker(
                    worker_id=self.hostname, host=self.executor.identity.host, pid=os.getpid(),
                    active=len(worker_state.active_requests), rss_bytes=rss_bytes(), version=VERSION)
            except Exception as exc:            # noqa: BLE001 - the store may be back next time
                log.warning("could not record the worker heartbeat of %s (%s)", self.hostname, describe(exc))
            if self._halt.wait(self.interval):
                return

    def stop(self) -> None:
        self._halt.set()


def _connect_worker_signals(executor: CeleryExecutor) -> None:
    """Celery's signals are process-wide; each handler acts for this executor's app only."""
    app, nodes = executor.celery, {}

    def ours(sender) -> bool:
        return getattr(sender, "app", None) is app

    @signals.celeryd_after_setup.connect(weak=False)
    def remember_name(sender, instance, **_):
        if ours(instance):
            nodes["hostname"], nodes["main"] = sender, os.getpid()

    @signals.worker_process_init.connect(weak=False)
    def forked(**_):
        if "hostname" in nodes:
            executor.after_fork()

    @signals.worker_ready.connect(weak=False)
    def ready(sender, **_):
        if ours(sender) and "hostname" in nodes:
            executor.worker_ready(nodes["hostname"])

    @signals.worker_shutting_down.connect(weak=False)
    def shutting_down(sig=None, how=None, **_):
        if nodes.get("main") == os.getpid() and how == "Warm":
            executor.warm_shutdown(nodes["hostname"])

    @signals.worker_shutdown.connect(weak=False)
    def worker_ends(sender=None, **_):
        if executor._beat is not None:
            executor._beat.stop()

    @signals.worker_process_shutdown.connect(weak=False)
    def process_ends(**_):
        if "hostname" in nodes:
            executor.shutdown(timeout=5)
