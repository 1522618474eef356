"""What a running job talks to: coalesced progress, buffered logs, usage and the stop flag.

Tracking must never slow a job's hot loop, so ``progress`` and ``log`` only touch memory;
the buffers are written to the store at most every ``flush_interval`` (by the job's own
thread on its next call, or by the runner's monitor when the job is busy elsewhere), and
always before the final state is written.  Progress patches are composed so that the last
value of every key is what reaches the store, exactly as if each patch had been sent
(RFC 7396); a patch that cannot be composed with the pending one flushes it first.
"""
from __future__ import annotations

import copy
import threading
import time
from typing import Any

from repositories import SessionRepository
from repositories import validation as check
from repositories.errors import InvalidTransition, LogLimitExceeded, SessionNotFound
from repositories.records import LogInput

#: Entries per store call; the API's own limit per batch.
LOG_BATCH = 1000


def fit_message(message: str) -> str:
    """Cut a message (a long traceback, say) to the store's 8 KiB instead of failing the job."""
    raw = message.encode("utf-8", "surrogatepass")
    if len(raw) <= check.MAX_MESSAGE_BYTES:
        return message
    return raw[:check.MAX_MESSAGE_BYTES - 4].decode("utf-8", "ignore") + " …"


def compose(pending: dict, patch: dict) -> bool:
    """Fold ``patch`` into ``pending`` in place; False (nothing changed) when no single
    merge patch can say "apply pending, then patch", e.g. a scalar then an object."""
    if "percent" in pending and "percent" not in patch:
        return False                       # the store derives percent per report
    if not _composable(pending, patch):
        return False
    _fold(pending, patch)
    return True


def _composable(pending: dict, patch: dict) -> bool:
    for key, value in patch.items():
        if key not in pending:
            continue
        old = pending[key]
        if isinstance(value, dict) or isinstance(old, dict):
            if not (isinstance(value, dict) and isinstance(old, dict)) or not _composable(old, value):
                return False
    return True


def _fold(pending: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(pending.get(key), dict):
            _fold(pending[key], value)
        else:
            pending[key] = copy.deepcopy(value)


class RunContext:
    """The ``JobContext`` the runner hands a job (see ``webapp.runner.kinds``)."""

    def __init__(self, repository: SessionRepository, session_id: str, *, flush_interval: float = 0.25,
                 max_buffered_logs: int = 10 * LOG_BATCH):
        self.session_id = session_id
        self._repository = repository
        self._flush_interval = flush_interval
        self._max_buffered_logs = max_buffered_logs
        self._lock = threading.Lock()          # guards the buffers below
        self._flushing = threading.Lock()      # one writer at a time keeps log order
        self._progress: dict | None = None
        self._meta: dict | None = None
        self._tokens, self._cost = 0, 0.0
        self._logs: list[LogInput] = []
        self._last_flush = time.monotonic()
        self._last_write = self._last_flush
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self.stop_seen = False                 # the job asked should_stop() and got True
        self.abandoned = False                 # the store no longer takes reports from us
        self.dropped_logs = 0
        self._log_full = False

    # -- the job's side --------------------------------------------------------------
    def progress(self, **fields: Any) -> None:
        check.check_object("progress", fields)
        with self._lock:
            if self._progress is None:
                self._progress = copy.deepcopy(fields)
                composed = True
            else:
                composed = compose(self._progress, fields)
        if not composed:
            self.flush()
            with self._lock:
                self._progress = copy.deepcopy(fields)
        self._flush_if_due()

    def meta(self, **fields: Any) -> None:
        check.check_object("meta", fields)
        with self._lock:
            if self._meta is None:
                self._meta = {}
            self._meta.update(copy.deepcopy(fields))

    def log(self, level: str, message: str, **fields: Any) -> None:
        entry = check.check_log_batch([LogInput(level, fit_message(str(message)), fields)])[0]
        with self._lock:
            if len(self._logs) >= self._max_buffered_logs:
                self.dropped_logs += 1
                return
            self._logs.append(entry)
            full = len(self._logs) >= LOG_BATCH
        if full:
            self.flush()
        else:
            self._flush_if_due()

    def usage(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        check.check_usage({"tokens": tokens, "cost": cost})
        with self._lock:
            self._tokens += tokens
            self._cost += float(cost)
        self._flush_if_due()

    def should_stop(self) -> bool:
        if self._stop.is_set():
            self.stop_seen = True
            return True
        return False

    # -- the runner's side -------------------------------------------------------------
    def request_stop(self, reason: str) -> bool:
        """Raise the flag; True the first time."""
        if self._stop.is_set():
            return False
        self.stop_reason = reason
        self._stop.set()
        return True

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def idle_for(self) -> float:
        """Seconds since the store last heard from this job."""
        return time.monotonic() - self._last_write

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._logs or self._progress is not None or self._meta or self._tokens or self._cost)

    def due(self) -> bool:
        return time.monotonic() - self._last_flush >= self._flush_interval and self.has_pending()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self._flush_interval:
            self.flush()

    def flush(self, *, heartbeat: bool = False) -> None:
        """Write what is buffered: logs first, then progress, meta and usage in one report,
        whose answer carries the stop flag set through the API (in any process).
        ``heartbeat`` writes a report even with nothing buffered."""
        with self._flushing:
            with self._lock:
                logs, self._logs = self._logs, []
                progress, self._progress = self._progress, None
                meta, self._meta = self._meta, None
                tokens, cost = self._tokens, self._cost
                self._tokens, self._cost = 0, 0.0
                self._last_flush = time.monotonic()
            if self.abandoned:
                return
            try:
                for start in range(0, len(logs), LOG_BATCH):
                    self._append(logs[start:start + LOG_BATCH])
                if progress is not None or meta or tokens or cost or heartbeat:
                    usage = {"tokens": tokens, "cost": cost} if tokens or cost else None
                    ack = self._repository.report_progress(self.session_id, progress=progress, meta=meta,
                                                           usage=usage)
                    if ack.stop_requested:
                        self.request_stop("stop requested")
                self._last_write = time.monotonic()
            except (InvalidTransition, SessionNotFound):
                self.abandon()                  # finalized elsewhere (stop grace, sweep, cleanup)

    def _append(self, batch: list[LogInput]) -> None:
        """A full log must not fail the job: keep the entries that fit, drop the rest."""
        if self._log_full:
            self.dropped_logs += len(batch)
            return
        try:
            self._repository.append_logs(self.session_id, batch)
        except LogLimitExceeded as exc:
            self._log_full = True
            room = max(exc.cap - exc.stored, 0)
            if room:
                self._repository.append_logs(self.session_id, batch[:room])
            self.dropped_logs += len(batch) - room

    def abandon(self) -> None:
        """The session was finalized without us: drop buffers, make the job stop."""
        self.abandoned = True
        self.request_stop(self.stop_reason or "the session was finalized")
