"""``Client`` and ``Run``: one import to track work that runs outside Runboard.

A ``Run`` is the reporting core (``runboard.reporting``) with HTTP as its transport.  Its
calls only touch memory; one background thread per ``Client`` sends every run's buffers at
least every ``flush_interval``, heartbeats idle runs, and reads the stop flag of runs that
sent nothing lately, so ``should_stop()`` turns True within ``stop_poll`` (1 s) plus one
request of a stop asked anywhere.

Creating and starting the session are requests in the run's outbox like any other: a
server that is down when the job begins delays them (``run.id`` is None until then), and
a run whose server never came back leaves everything — the creation included — in a
spool file for ``runboard sync``.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
import traceback
import weakref
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from . import spool
from .http import HttpTransport
from .reporting import Reporter
from .transport import LEVELS, Op, Rejected, RetryLater, SessionGone, fit_message

log = logging.getLogger("runboard")

MAX_ERROR_CHARS = 8 * 1024
TERMINAL = ("completed", "failed", "stopped")


def summary(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, the session's ``error`` for a job that raised."""
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:MAX_ERROR_CHARS]


class Run(Reporter):
    """One tracked session: ``progress``, ``meta``, ``log``, ``usage``, ``should_stop``,
    ``flush``, ``finish``; a context manager that finishes it on leaving the block."""

    def __init__(self, client: "Client", session_id: Optional[str]):
        super().__init__(client._transport, session_id, flush_interval=client.flush_interval,
                         max_buffered_logs=client.max_buffered_logs, wake=self._ask_sender)
        self._client = client
        self._wanted = False                  # the job asked for a send before the interval
        self.result: Optional[Dict[str, Any]] = None
        self.state: Optional[str] = None      # the state it was finished with, once it was
        self.spool_path: Optional[Path] = None

    @property
    def id(self) -> Optional[str]:
        """The session's id; None while the server has not yet answered its creation."""
        return self.session_id

    # -- the core's hooks --------------------------------------------------------------
    def make_entry(self, level: str, message: str, fields: dict) -> dict:
        """The entry as the API takes it, but for ``at``: the moment of the call as
        ``time.time()``, four times cheaper than a datetime; the sender formats it."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        return {"level": level, "message": fit_message(message if type(message) is str else str(message)),
                "fields": fields, "at": time.time()}

    def check_usage(self, tokens: int, cost: float) -> None:
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise ValueError("usage tokens must be a non-negative integer")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not cost >= 0:
            raise ValueError("usage cost must be a non-negative number")

    def _ask_sender(self) -> None:
        if not self._wanted:                   # once per send: the job may call on meanwhile
            self._wanted = True
            self._client._wake.set()

    # -- the job's side beyond the core --------------------------------------------------
    def flush(self, timeout: Optional[float] = None, *, heartbeat: bool = False) -> bool:
        """Without ``timeout``: one attempt to send everything (the core's flush).  With it:
        keep trying for up to ``timeout`` seconds; True when nothing is left unsent."""
        if timeout is None:
            return super().flush(heartbeat=heartbeat)
        return self.drain(time.monotonic() + timeout)

    def finish(self, state: str, result: Optional[dict] = None, error: Optional[str] = None) -> None:
        """End the session as ``state`` after everything reported so far.  Never raises
        because of the network: what the server did not get within ``flush_timeout`` goes
        to a spool file, named in a warning."""
        if self.state is not None or self.released:
            return
        if state not in TERMINAL:
            raise ValueError(f"state must be one of {', '.join(TERMINAL)}, not {state!r}")
        self.state = state
        body: Dict[str, Any] = {"state": state}
        if result is not None:
            body["result"] = result
        if error is not None:
            body["error"] = str(error)[:MAX_ERROR_CHARS]
        try:
            deadline = time.monotonic() + self._client.flush_timeout
            self.final_flush(deadline)
            if self.abandoned:
                return
            self.enqueue(Op("finish", body))
            if not self.drain(deadline):       # one more try at least, then the spool
                self._spool()
        finally:
            self._client._forget(self)

    def release(self, *, wait: bool = True) -> None:
        """Let go of the session without finishing it: it stays ``running`` for another
        process or a later attempt to go on with (a retried Celery task), or for the
        heartbeat sweep.  ``wait`` delivers what was reported within ``flush_timeout`` and
        spools the rest; without it, one attempt is made (a process being terminated).
        Calls on the run after it are ignored: the session is no longer this run's."""
        try:
            if self.state is not None or self.abandoned:
                return
            if not self.flush(self._client.flush_timeout if wait else None) and wait:
                self._spool()
        finally:
            self._client._forget(self)
            if self.state is None:
                self.let_go()

    def _spool(self) -> None:
        ops = self.pending_ops()
        if not ops or self.abandoned:
            return
        self.spool_path = spool.write(self._client.spool_dir, self._client.url, self.session_id, ops)
        log.warning("the server stayed unreachable; %d unsent requests of session %s were "
                    "written to %s — send them with `runboard sync`", len(ops), self.session_id or "(not yet created)",
                    self.spool_path)

    def capture_logging(self, logger: Optional[logging.Logger] = None, level: int = logging.INFO):
        """``with run.capture_logging():`` sends the records of ``logger`` (the root logger
        by default) at ``level`` and above to this run's log, for the block only."""
        from .handler import LogHandler
        return _attached(LogHandler(self, level=level), logger or logging.getLogger())

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.finish("stopped" if self.stop_seen else "completed", result=self.result)
        elif isinstance(exc, KeyboardInterrupt):
            self.log("warning", "interrupted (KeyboardInterrupt)")
            self.finish("stopped", result=self.result)
        else:
            self.log("error", "".join(traceback.format_exception(exc_type, exc, tb)).rstrip())
            self.finish("failed", error=summary(exc))
        return False                           # the exception, if any, goes on unchanged


@contextlib.contextmanager
def _attached(handler: logging.Handler, logger: logging.Logger) -> Iterator[logging.Handler]:
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Client:
    """A connection to one Runboard server with one token (``RUNBOARD_URL``,
    ``RUNBOARD_TOKEN`` when not given); safe to share between threads."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *, timeout: float = 10.0,
                 worker_id: Optional[str] = None, flush_timeout: float = 30.0, flush_interval: float = 0.25,
                 heartbeat_interval: float = 10.0, stop_poll: float = 1.0, max_buffered_logs: int = 100_000,
                 spool_dir: Optional[str] = None):
        url = url or os.environ.get("RUNBOARD_URL")
        token = token or os.environ.get("RUNBOARD_TOKEN")
        if not url:
            raise ValueError("no server: pass Client(url=...) or set RUNBOARD_URL, e.g. http://127.0.0.1:8000")
        if not token:
            raise ValueError("no token: pass Client(token=...) or set RUNBOARD_TOKEN "
                             "(flask --app wsgi tokens create --role worker --owner …)")
        self.url = url.rstrip("/")
        self.worker_id = worker_id or default_worker_id()
        self.flush_timeout, self.flush_interval = flush_timeout, flush_interval
        self.heartbeat_interval, self.stop_poll = heartbeat_interval, stop_poll
        self.max_buffered_logs = max_buffered_logs
        self.spool_dir = Path(spool_dir) if spool_dir else spool.default_dir()
        self._transport = HttpTransport(self.url, token, timeout=timeout)
        self._runs: "weakref.WeakSet[Run]" = weakref.WeakSet()
        self._runs_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._sender: Optional[threading.Thread] = None
        atexit.register(self.close)

    # -- runs ------------------------------------------------------------------------
    def track(self, kind: str, *, label: str = "", owner: Optional[str] = None,
              params: Optional[dict] = None, meta: Optional[dict] = None, worker_id: Optional[str] = None,
              idempotency_key: Optional[str] = None, start: bool = True) -> Run:
        """Create and start a session; use the ``Run`` as a context manager.

        ``worker_id`` overrides the client's for this session's ``start``; ``start=False``
        leaves the session ``pending``, for whichever process starts it.
        ``idempotency_key`` fixes the creation's key (random by default): a ``track`` with
        the same key and the same arguments, on the same token within 24 hours, from any
        process, reports on the session the first one created."""
        body: Dict[str, Any] = {"kind": kind, "label": label}
        for name, value in (("owner", owner), ("params", params), ("meta", meta)):
            if value is not None:
                body[name] = value
        run = Run(self, None)
        run.enqueue(Op("create", body, idempotency_key))
        if start:
            run.enqueue(Op("start", {"worker_id": worker_id or self.worker_id}))
        return self._begin(run)

    def attach(self, session_id: str) -> Run:
        """Take over a session created elsewhere, starting it when it is pending."""
        run = Run(self, session_id)
        try:
            state = self._transport.get(session_id).get("state")
        except RetryLater:
            state = "pending"                  # the start's answer will tell
        except (SessionGone, Rejected) as exc:
            log.error("cannot attach to session %s (%s); nothing is sent for it", session_id, exc)
            run.abandon()
            return run
        if state in TERMINAL:
            log.error("session %s is already %s; nothing is sent for it", session_id, state)
            run.abandon()
            return run
        if state == "pending":
            run.enqueue(Op("start", {"worker_id": self.worker_id}))
        return self._begin(run)

    def _begin(self, run: Run) -> Run:
        run.flush()                            # one attempt now, so run.id is usually known at once
        with self._runs_lock:
            self._runs.add(run)
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._send_loop, name="runboard-client-sender", daemon=True)
                self._sender.start()
        return run

    def _forget(self, run: Run) -> None:
        with self._runs_lock:
            self._runs.discard(run)

    def _active(self) -> list:
        with self._runs_lock:
            return list(self._runs)

    # -- the one background thread -------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_interval / 2)
            self._wake.clear()
            for run in self._active():
                try:
                    self._look_after(run)
                except Exception:              # noqa: BLE001 - the sender must outlive anything
                    log.exception("sending the reports of session %s failed", run.session_id)

    def _look_after(self, run: Run) -> None:
        if run.abandoned or run.backing_off() or run.state is not None:
            return
        if run._wanted:
            run._wanted = False
            run.flush()
        elif not run.tend(self.heartbeat_interval):
            self._poll_stop(run)

    def _poll_stop(self, run: Run) -> None:
        """Read the stop flag of a run whose reports have not brought it lately."""
        now = time.monotonic()
        if run.session_id is None or run.stop_requested or now - run.stop_news_at < self.stop_poll:
            return
        run.stop_news_at = now                 # also when the read fails: try again a poll later
        try:
            session = self._transport.get(run.session_id)
        except RetryLater:
            return
        except SessionGone:
            run.abandon()
            return
        except Rejected as exc:
            run.give_up(f"the server refused to say whether to stop ({exc})")
            return
        if session.get("state") in TERMINAL:
            run.abandon()
        elif session.get("stop_requested"):
            run.request_stop("stop requested")

    def close(self) -> None:
        """Deliver (or spool) what open runs hold, stop the sender, close the connections."""
        if self._closed.is_set():
            return
        for run in self._active():
            if run.state is None and run.has_pending():
                if not run.drain(time.monotonic() + self.flush_timeout):
                    run._spool()
        self._closed.set()
        self._wake.set()
        if self._sender is not None and self._sender is not threading.current_thread():
            self._sender.join(5)
        self._transport.close()
        atexit.unregister(self.close)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
