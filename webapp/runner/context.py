"""What a running job talks to: coalesced progress and meta, buffered logs, usage and the
stop flag.

Tracking must never slow a job's hot loop, so ``progress``, ``meta`` and ``log`` only touch
memory; the buffers are written to the store at most every ``flush_interval`` (by the job's
own thread on its next call, or by the runner's monitor when the job is busy elsewhere), and
always before the final state is written.  Progress and meta patches are composed so that
what reaches the store is exactly what sending each patch would give (RFC 7396); a patch
that cannot be composed with the pending one is written after it, in order.

The context keeps what the job wrote until the store has it:

* a full log buffer blocks ``log()`` (back-pressure) instead of dropping entries; only the
  session's cap refuses entries, and the final flush then ends the log with a warning
  saying how many;
* a store that cannot be reached (``retry.is_store_failure``) leaves the unsent entries
  and patches buffered, in front of newer ones, and the writes are tried again after a
  capped exponential backoff; the job's calls never raise because of it.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

from repositories import SessionRepository
from repositories import validation as check
from repositories.base import DEFAULT_MAX_LOG_ENTRIES
from repositories.errors import InvalidTransition, LogLimitExceeded, SessionNotFound
from repositories.records import LogInput

from .patches import PROGRESS_DERIVED, PatchQueue
from .retry import Backoff, describe, is_store_failure

log = logging.getLogger("runboard.runner")

#: Entries per store call: the API's own limit per batch, so a remote store takes it too.
LOG_BATCH = check.MAX_LOG_BATCH
#: Progress and meta patches that could not be composed and wait for the store, beyond
#: which ``progress()`` and ``meta()`` block like a full log buffer.
MAX_QUEUED_PATCHES = 100


def fit_message(message: str) -> str:
    """Cut a message (a long traceback, say) to the store's 8 KiB instead of failing the job."""
    raw = message.encode("utf-8", "surrogatepass")
    if len(raw) <= check.MAX_MESSAGE_BYTES:
        return message
    return raw[:check.MAX_MESSAGE_BYTES - 4].decode("utf-8", "ignore") + " …"


def refused_note(refused: int, cap: int) -> str:
    return f"{refused} log entries were not stored: the session's log holds at most {cap} entries"


class RunContext:
    """The ``JobContext`` the runner hands a job (see ``webapp.runner.kinds``)."""

    def __init__(self, repository: SessionRepository, session_id: str, *, flush_interval: float = 0.25,
                 max_buffered_logs: int = 10 * LOG_BATCH, max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES):
        self.session_id = session_id
        self._repository = repository
        self._flush_interval = flush_interval
        self._max_buffered_logs = max_buffered_logs
        self._lock = threading.Lock()          # guards the buffers below
        self._room = threading.Condition(self._lock)   # notified when a write empties them
        self._flushing = threading.Lock()      # one writer at a time keeps log order
        self._progress = PatchQueue(derived=PROGRESS_DERIVED)
        self._meta = PatchQueue()
        self._tokens, self._cost = 0, 0.0
        self._logs: list[LogInput] = []
        self._backoff = Backoff()
        self._retry_at = 0.0                   # no automatic write before (after a store failure)
        self._last_flush = time.monotonic()
        self._last_write = self._last_flush
        self._log_cap = max_log_entries        # corrected by the store's answer if it differs
        self._log_stored = 0                   # the session's entries after our last append
        self._closing = False                  # the final flush may use the slot kept for the note
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self.stop_seen = False                 # the job asked should_stop() and got True
        self.abandoned = False                 # the store no longer takes reports from us
        self.refused_logs = 0                  # entries the session's cap did not take

    # -- the job's side --------------------------------------------------------------
    def progress(self, **fields: Any) -> None:
        check.check_object("progress", fields)
        self._queue(self._progress, fields)

    def meta(self, **fields: Any) -> None:
        check.check_object("meta", fields)
        self._queue(self._meta, fields)

    def _queue(self, patches: PatchQueue, fields: dict) -> None:
        self._make_room()
        with self._lock:
            patches.add(fields)
            behind = len(patches) > 1          # not composable: write the older patch now
        self._flush_if_due(now=behind)

    def log(self, level: str, message: str, **fields: Any) -> None:
        entry = check.check_log_batch([LogInput(level, fit_message(str(message)), fields)])[0]
        self._make_room()
        with self._lock:
            self._logs.append(entry)
            full = len(self._logs) >= LOG_BATCH
        self._flush_if_due(now=full)

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

    def _make_room(self) -> None:
        """Back-pressure: while the buffers are full, write them from this thread (at the
        backoff's pace while the store is unreachable) or wait for another writer to."""
        while not self._room_or_turn():
            self.flush()

    def _room_or_turn(self) -> bool:
        """True once the buffers have room; False when it is time for this thread to write."""
        with self._room:
            while not (self.abandoned or (len(self._logs) < self._max_buffered_logs
                                          and len(self._progress) + len(self._meta) < MAX_QUEUED_PATCHES)):
                wait = self._retry_at - time.monotonic()
                if wait <= 0:
                    return False
                self._room.wait(wait)
            return True

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

    def backing_off(self) -> bool:
        """The store failed recently: nothing is written automatically before the retry time."""
        return time.monotonic() < self._retry_at

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._logs or self._progress or self._meta or self._tokens or self._cost)

    def due(self) -> bool:
        return (not self.backing_off() and time.monotonic() - self._last_flush >= self._flush_interval
                and self.has_pending())

    def _flush_if_due(self, *, now: bool = False) -> None:
        moment = time.monotonic()
        if moment >= self._retry_at and (now or moment - self._last_flush >= self._flush_interval):
            self.flush()

    def flush(self, *, heartbeat: bool = False) -> bool:
        """Write what is buffered: logs first, then progress, meta and usage in reports whose
        answers carry the stop flag set through the API (in any process).  ``heartbeat``
        writes a report even with nothing buffered.

        True when everything taken was written (or is no longer wanted: the session was
        finalized elsewhere).  False when the store could not be reached: what was not sent
        goes back in front of what the job buffered meanwhile, and automatic writes pause
        for the backoff.  A batch sent again was not stored by the failed call — see
        ``webapp.runner.retry`` for why, and for the one ambiguous case."""
        with self._flushing:
            with self._lock:
                logs, self._logs = self._logs, []
                reports = [{"progress": p, "meta": m, "usage": None}
                           for p, m in itertools.zip_longest(self._progress.take(), self._meta.take())]
                usage = {"tokens": self._tokens, "cost": self._cost} if self._tokens or self._cost else None
                self._tokens, self._cost = 0, 0.0
                self._last_flush = time.monotonic()
            if self.abandoned:
                return True
            if not reports and (usage or heartbeat):
                reports = [{"progress": None, "meta": None, "usage": None}]
            if reports:
                reports[0]["usage"] = usage
            sent_logs = sent_reports = 0
            try:
                while sent_logs < len(logs):
                    batch = logs[sent_logs:sent_logs + LOG_BATCH]
                    self._append(batch)
                    sent_logs += len(batch)
                for report in reports:
                    ack = self._repository.report_progress(self.session_id, **report)
                    sent_reports += 1
                    if ack.stop_requested:
                        self.request_stop("stop requested")
            except (InvalidTransition, SessionNotFound):
                self.abandon()                  # finalized elsewhere (stop grace, sweep, cleanup)
                return True
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                self._put_back(logs[sent_logs:], reports[sent_reports:])
                self.store_failed(exc)
                return False
            self._written()
            return True

    def _append(self, batch: list[LogInput]) -> None:
        """Store the entries that fit under the session's cap, keeping one slot for the final
        flush's note about the rest, and count the rest as refused — once they are final:
        a store failure leaves the whole batch to be sent again."""
        room = max(self._log_cap - self._log_stored - (0 if self._closing else 1), 0)
        fits = batch[:room]
        if fits:
            try:
                self._log_stored = self._repository.append_logs(self.session_id, fits).last_seq
            except LogLimitExceeded as exc:     # another writer, or a smaller cap than ours
                self._log_stored, self._log_cap = exc.stored, exc.cap
                return self._append(batch)
        self.refused_logs += len(batch) - len(fits)

    def _put_back(self, logs: list[LogInput], reports: list[dict]) -> None:
        with self._lock:
            self._logs[0:0] = logs
            self._progress.put_back([r["progress"] for r in reports if r["progress"] is not None])
            self._meta.put_back([r["meta"] for r in reports if r["meta"] is not None])
            for usage in (r["usage"] for r in reports if r["usage"]):
                self._tokens += usage["tokens"]
                self._cost += usage["cost"]

    def store_failed(self, exc: Exception) -> None:
        """The store could not be reached (by a write here, or the monitor's read): wait
        before the next automatic write, longer after each failure in a row."""
        self._retry_at = time.monotonic() + self._backoff.failed()
        if self._backoff.failures == 1:
            log.warning("session %s: store unreachable (%s); its reports wait and are retried",
                        self.session_id, describe(exc))

    def _written(self) -> None:
        self._last_write = time.monotonic()
        self._retry_at = 0.0
        failures = self._backoff.succeeded()
        if failures:
            log.info("session %s: store reachable again after %d failed attempts", self.session_id, failures)
        with self._room:
            self._room.notify_all()

    def final_flush(self, deadline: float) -> bool:
        """Write everything before the final state, waiting out an unreachable store until
        ``deadline`` (``time.monotonic``), then end the log with the note about entries the
        cap refused.  False when it gave up; what was lost is logged."""
        if not self._drain(deadline):
            return False
        if not self.refused_logs or self.abandoned:
            return True
        refused = self.refused_logs
        self._closing = True
        with self._lock:
            self._logs.append(LogInput("warning", refused_note(refused, self._log_cap)))
        if not self._drain(deadline):
            return False
        if self.refused_logs > refused:
            log.warning("session %s: %s, and the log had no room left to say so", self.session_id,
                        refused_note(refused, self._log_cap))
        return True

    def _drain(self, deadline: float) -> bool:
        while True:
            if self.flush() and (self.abandoned or not self.has_pending()):
                return True
            wait = max(self._retry_at - time.monotonic(), 0.0)
            if time.monotonic() + wait > deadline:
                with self._lock:
                    lost = len(self._logs)
                log.error("session %s: gave up on its last reports, the store stayed unreachable; "
                          "%d log entries (and any pending progress, meta or usage) were not stored", self.session_id, lost)
                return False
            time.sleep(wait)

    def abandon(self) -> None:
        """The session was finalized without us: drop buffers, make the job stop."""
        self.abandoned = True
        self.request_stop(self.stop_reason or "the session was finalized")
        with self._room:
            self._room.notify_all()
