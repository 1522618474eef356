"""The in-process job runner: a bounded thread pool per app process.

Every state it shows is the store's: a job's session is marked ``running`` in the store
before the job's first line runs, and the runner writes the final state itself —
``completed`` with the result, ``failed`` with a one-line summary (the traceback goes to
the session's log, never to API responses), ``stopped`` with the partial result when the
job honoured ``should_stop()``.  A monitor thread (``webapp.runner.monitor``) flushes idle
jobs' buffers, heartbeats, carries stop requests from the store to the jobs, and
finalizes jobs that ignore a stop for longer than the grace period.

A store that is briefly unreachable (a database restart, a failover) must not fail a job:
the context keeps its reports until they can be written (``webapp.runner.context``), and
``start``, the final flush and ``finish`` are retried with backoff (``webapp.runner.retry``)
for up to the heartbeat timeout (a running session unheard of for that long is failed by
the heartbeat sweep anyway); past it the runner gives up and logs why.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from datetime import timedelta

import pydantic

from repositories import SessionRepository
from repositories.base import DEFAULT_MAX_LOG_ENTRIES
from repositories.errors import InvalidTransition, RunboardError, SessionNotFound, ValidationError
from repositories.states import State

from .context import RunContext
from .executor import Executor
from .identity import WorkerIdentity
from .kinds import JobFailed, JobKind, KindRegistry
from .monitor import Monitor
from .retry import describe, is_store_failure, retrying

log = logging.getLogger("runboard.runner")
ERROR_LIMIT = 500


def heartbeat_interval(timeout: timedelta) -> float:
    """How often a process heartbeats its jobs and itself: four times per timeout, at most
    every 15 s, so one or two lost writes never look like a dead process."""
    return max(min(timeout.total_seconds() / 4, 15.0), 0.2)


def summary(exc: BaseException) -> str:
    """One line for the session's ``error``: the exception's type and first line."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line[:ERROR_LIMIT]


class Runner(Executor):
    """The ``threads`` executor, and the code every executor runs a job with: ``run_here``
    is what a Celery worker's task calls (``celery_executor``).

    ``registers``: whether the monitor records this process in the worker registry (a
    Celery worker's main process does that for its pool's children)."""

    def __init__(self, repository: SessionRepository, kinds: KindRegistry, *, threads: int,
                 stop_grace: timedelta, heartbeat_timeout: timedelta, flush_interval: float = 0.25,
                 max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES, identity: WorkerIdentity | None = None,
                 registers: bool = True):
        self.repository, self.kinds = repository, kinds
        self.identity = identity or WorkerIdentity.of_this_process()
        self.registers = registers
        self.stop_grace = stop_grace.total_seconds()
        self.heartbeat_timeout = heartbeat_timeout.total_seconds()
        self.heartbeat_interval = heartbeat_interval(heartbeat_timeout)
        self.flush_interval = flush_interval
        self.max_log_entries = max_log_entries
        self._threads = threads
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pool: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._active: dict[str, RunContext] = {}
        self._queued: set[str] = set()
        self._stop_asked_at: dict[str, float] = {}
        self._closing = False
        self._started = False
        self._monitor = None

    @classmethod
    def configured(cls, repository: SessionRepository, kinds: KindRegistry, settings, *, threads: int,
                   **options) -> "Runner":
        """A runner with the settings' grace, heartbeat timeout and log cap: the thread
        pool's and each Celery pool process's."""
        return cls(repository, kinds, threads=threads, stop_grace=settings.stop_grace,
                   heartbeat_timeout=settings.heartbeat_timeout, max_log_entries=settings.max_log_entries,
                   **options)

    # -- submission ----------------------------------------------------------------
    def submit(self, session_id: str, kind: JobKind, params: pydantic.BaseModel) -> None:
        """Queue a pending session; it stays ``pending`` (honestly) until a thread is free."""
        self.start()
        with self._lock:
            if self._closing:
                closing = True
            else:
                closing = False
                self._queued.add(session_id)
                self._jobs.put((session_id, kind, params))
        if closing:
            self._finish_unstarted(session_id, "the server is shutting down", self.deadline())

    def start(self) -> None:
        """Start the pool and the monitor (idempotent; gunicorn calls it once per worker)."""
        with self._lock:
            if self._started or self._closing:
                return
            self._started = True
            # Daemon threads: a job that ignores every stop must not keep the process alive
            # after shutdown has finalized its session.
            self._pool = [threading.Thread(target=self._work, name=f"runboard-job-{n}", daemon=True)
                          for n in range(self._threads)]
            self._monitor = Monitor(self)
        for thread in self._pool:
            thread.start()
        self._monitor.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run(*job)
            except Exception:                   # noqa: BLE001 - the store failed; keep the thread
                log.exception("runner could not start session %s", job[0])

    # -- running a job ------------------------------------------------------------------
    def run_here(self, session_id: str, kind: JobKind, params: pydantic.BaseModel) -> bool:
        """Run the job in the calling thread (a Celery task's), with the monitor watching
        it as it watches the pool's; False when the start claim failed (the session was
        started, finished or removed before: a task delivered twice does nothing)."""
        self.start()
        return self._run(session_id, kind, params)

    def queued(self) -> list[str]:
        """Sessions this process has queued and not yet started (their queued heartbeat)."""
        with self._lock:
            return list(self._queued)

    def _run(self, session_id: str, kind: JobKind, params: pydantic.BaseModel) -> bool:
        context = RunContext(self.repository, session_id, flush_interval=self.flush_interval,
                             max_log_entries=self.max_log_entries)
        with self._lock:
            self._queued.discard(session_id)
            if self._closing:
                return False                    # shutdown finishes queued sessions itself
        try:
            # The start is the claim: whoever moves pending -> running runs the job.
            retrying(lambda: self.repository.start(session_id, worker_id=self.identity.worker_id), deadline=self.deadline(),
                     what=f"start session {session_id}")
        except (InvalidTransition, SessionNotFound):
            return False                        # cancelled, removed, or started by someone else
        # Watched only once it is running: the monitor takes any other state to mean
        # "finalized elsewhere" and would abandon a session that is still starting.
        with self._lock:
            closing = self._closing
            if not closing:
                self._active[session_id] = context
        if closing:
            self._finish_unstarted(session_id, "the server shut down before the job started", self.deadline())
            return True
        try:
            context.meta(runner=self.identity.as_meta())
            context.log("info", f"started by {self.identity.worker_id}", kind=kind.name)
            self._execute(context, kind, params)
        except Exception:                       # the store itself failed: nothing more we can write
            log.exception("runner could not track session %s", session_id)
        finally:
            with self._lock:
                self._active.pop(session_id, None)
                self._stop_asked_at.pop(session_id, None)
                self._drained.notify_all()
        return True

    def _execute(self, context: RunContext, kind: JobKind, params) -> None:
        result, error = None, None
        try:
            result = kind.run(context, params)
            state = State.STOPPED if context.stop_seen else State.COMPLETED
            if state is State.STOPPED:
                context.log("info", f"stopped: {context.stop_reason}")
        except JobFailed as exc:
            state, error, result = State.FAILED, summary(exc).split(": ", 1)[-1], exc.result
            context.log("error", error)
        except Exception as exc:                # noqa: BLE001 - any job failure is the job's
            state, error = State.FAILED, summary(exc)
            context.log("error", "".join(traceback.format_exception(exc)).rstrip())
        if result is not None and not isinstance(result, dict):
            result = {"value": result}
        self._finalize(context, state, result, error)

    def deadline(self) -> float:
        """How long ``start``, the final flush and ``finish`` wait for an unreachable store."""
        return time.monotonic() + self.heartbeat_timeout

    def _finalize(self, context: RunContext, state: State, result, error) -> None:
        """Flush everything, then write the final state — unless someone else already did."""
        deadline = self.deadline()
        context.final_flush(deadline)
        if context.abandoned:
            return
        try:
            self._finish(context.session_id, state, deadline, result=result, error=error)
        except ValidationError as exc:          # e.g. a result that is not JSON
            self._finish(context.session_id, State.FAILED, deadline,
                         error=f"the job's result could not be stored: {exc.message}"[:ERROR_LIMIT])
        except (InvalidTransition, SessionNotFound):
            pass                                # finalized by the stop grace or the sweeper
        context.abandoned = True

    def _finish(self, session_id: str, state: State, deadline: float, **outcome) -> None:
        """``finish``, retried while the store is unreachable; repeating it is harmless
        (the contract returns a session already in ``state`` unchanged).  Past the deadline
        the session is left to the heartbeat sweep, and the log says so."""
        try:
            retrying(lambda: self.repository.finish(session_id, state, **outcome), deadline=deadline,
                     what=f"finish session {session_id} as {state.value}")
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            log.error("gave up finishing session %s as %s: the store stayed unreachable (%s)",
                      session_id, state.value, describe(exc))

    # -- stop ---------------------------------------------------------------------------------
    def notify_stop(self, session_id: str) -> bool:
        """A stop request reached this process through the API: tell the job now instead of
        at the monitor's next look at the store.  True when the job runs here."""
        with self._lock:
            context = self._active.get(session_id)
        if context is None:
            return False
        self.ask_to_stop(context, "stop requested")
        return True

    def ask_to_stop(self, context: RunContext, reason: str) -> None:
        if context.request_stop(reason):
            with self._lock:
                self._stop_asked_at.setdefault(context.session_id, time.monotonic())

    def overdue(self) -> list[RunContext]:
        """Jobs still running ``stop_grace`` after they were asked to stop."""
        now = time.monotonic()
        with self._lock:
            for session_id, context in self._active.items():
                if context.stop_requested:      # also when the flag came back on a report
                    self._stop_asked_at.setdefault(session_id, now)
            return [self._active[s] for s, asked in self._stop_asked_at.items()
                    if s in self._active and now - asked >= self.stop_grace]

    def give_up_on(self, context: RunContext, error: str, deadline: float) -> None:
        """Finalize a job that did not acknowledge its stop; its later reports get 409s."""
        context.log("warning", error)
        context.final_flush(deadline)
        context.abandon()
        try:
            self._finish(context.session_id, State.STOPPED, deadline, error=error)
        except (InvalidTransition, SessionNotFound):
            pass
        with self._lock:
            self._stop_asked_at.pop(context.session_id, None)

    def active(self) -> list[RunContext]:
        with self._lock:
            return list(self._active.values())

    # -- shutdown -----------------------------------------------------------------------
    def shutdown(self, timeout: float = 20.0) -> None:
        """Ask every job to stop, give them ``timeout`` seconds to return, then finish what
        is left as ``stopped`` — running or still queued — before the process exits."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            queued, self._queued = set(self._queued), set()
        for context in self.active():
            self.ask_to_stop(context, "the server is shutting down")
        deadline = time.monotonic() + timeout
        for session_id in queued:
            self._finish_unstarted(session_id, "the server shut down before the job started", deadline)
        with self._lock:
            while self._active and time.monotonic() < deadline:
                self._drained.wait(timeout=max(deadline - time.monotonic(), 0.01))
        for context in self.active():
            self.give_up_on(context, "the server shut down before the job acknowledged the stop request",
                            deadline)
        if self._monitor is not None:
            self._monitor.stop()
        for _ in self._pool:
            self._jobs.put(None)
        # Idle threads exit at once; one still inside a job that ignored its stop is left
        # behind after a second (it is a daemon, and its session is finalized already).
        joined_by = time.monotonic() + 1.0
        for thread in self._pool:
            if thread is not threading.current_thread():
                thread.join(max(joined_by - time.monotonic(), 0))

    def _finish_unstarted(self, session_id: str, reason: str, deadline: float) -> None:
        try:
            self._finish(session_id, State.STOPPED, deadline, error=reason)
        except RunboardError:
            pass
