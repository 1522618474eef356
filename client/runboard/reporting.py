"""The reporting core: what a running job talks to, whoever carries its reports.

Runboard's in-process runner (transport: the repository) and the Python client (transport:
HTTP) hand a job the same object.  Tracking must never slow a job's hot loop, so
``progress``, ``meta``, ``log`` and ``usage`` only touch memory; the buffers become
requests at most every ``flush_interval`` and always before the final state is written.

Progress and meta patches are composed so that what reaches the store is exactly what
sending each patch would give (RFC 7396); a patch that cannot be composed with the
pending one is sent after it, in order.

The core keeps what the job wrote until the server has it:

* a full log buffer blocks ``log()`` (back-pressure) instead of dropping entries; only the
  session's cap refuses entries, and the final flush then ends the log with a warning
  saying how many;
* a request that could not be delivered (``RetryLater``) stays at the head of the outbox,
  *unchanged and with its idempotency key*, and is sent again after a capped exponential
  backoff with jitter (``Retry-After`` honoured) before anything newer.  Sending the very
  same request again is what makes a retry safe over HTTP: the server answers a repeat
  key from its memory instead of storing the batch twice.  What the job buffered
  meanwhile keeps composing behind it.
"""
from __future__ import annotations

import abc
import collections
import itertools
import logging
import threading
import time
from typing import Any, Callable, Deque, List, Optional

from .backoff import Backoff
from .patches import PROGRESS_DERIVED, PatchQueue
from .transport import LOG_BATCH, LogsFull, Op, Rejected, RetryLater, SessionGone, Transport

log = logging.getLogger("runboard")

#: Patches that could not be composed and wait, beyond which ``progress()`` and ``meta()``
#: block like a full log buffer.
MAX_QUEUED_PATCHES = 100


def refused_note(refused: int, cap: int) -> str:
    return f"{refused} log entries were not stored: the session's log holds at most {cap} entries"


class Reporter(abc.ABC):
    """The buffers, the outbox and the stop flag of one session.

    Subclasses say how an entry is built and checked (``make_entry``) and may check
    patches and usage (``check_patch``, ``check_usage``); ``wake`` is called when a flush
    is due, and by default flushes in the calling thread."""

    #: Where the core says what happened to the reports, and what it calls the other side.
    logger = log
    peer = "server"

    def __init__(self, transport: Transport, session_id: Optional[str], *, flush_interval: float = 0.25,
                 max_buffered_logs: int = 10 * LOG_BATCH, max_log_entries: Optional[int] = None,
                 wake: Optional[Callable[[], None]] = None):
        self.session_id = session_id
        self._transport = transport
        self._flush_interval = flush_interval
        self._max_buffered_logs = max_buffered_logs
        self._wake = wake or self.flush
        self._lock = threading.Lock()          # guards the buffers below
        self._room = threading.Condition(self._lock)   # notified when a write empties them
        self._flushing = threading.RLock()     # one sender at a time keeps order
        self._progress = PatchQueue(derived=PROGRESS_DERIVED)
        self._meta = PatchQueue()
        self._tokens, self._cost = 0, 0.0
        self._logs: List[Any] = []
        self._outbox: Deque[Op] = collections.deque()
        self._outbox_logs = 0                  # entries in the outbox: they count against the buffer
        self._backoff = Backoff()
        self._retry_at = 0.0                   # no automatic send before (after a failure)
        self._last_flush = time.monotonic()
        self._last_write = self._last_flush
        self._log_cap = max_log_entries        # None until the server tells us
        self._log_stored = 0                   # the session's entries after our last append
        self._closing = False                  # the final flush may use the slot kept for the note
        self._stop = threading.Event()
        self.stop_reason: Optional[str] = None
        self.stop_seen = False                 # the job asked should_stop() and got True
        self.abandoned = False                 # the server no longer takes reports from us
        self.released = False                  # let go of: another attempt reports on the session
        self.refused_logs = 0                  # entries the session's cap did not take
        self.rejection: Optional[str] = None   # why the server refused for good, if it did
        self.stop_news_at = time.monotonic()   # when the stop flag was last read (report answers carry it)

    # -- hooks -----------------------------------------------------------------------
    @abc.abstractmethod
    def make_entry(self, level: str, message: str, fields: dict) -> Any:
        """The buffered form of one log entry, checked, with ``at`` the moment of the call."""

    def check_patch(self, field: str, fields: dict) -> None:
        """Raise for a patch the server could never take."""

    def check_usage(self, tokens: int, cost: float) -> None:
        """Raise for a usage delta the server could never take."""

    # -- the job's side ----------------------------------------------------------------
    def progress(self, **fields: Any) -> None:
        self.check_patch("progress", fields)
        self._queue(self._progress, fields)

    def meta(self, **fields: Any) -> None:
        self.check_patch("meta", fields)
        self._queue(self._meta, fields)

    # ``_queue`` and ``log`` run in a job's hot loop: one lock, the room check and the
    # due check inline (see docs/benchmarks.md, "What a job pays per call").
    def _queue(self, patches: PatchQueue, fields: dict) -> None:
        if self.abandoned:
            return                             # nobody takes it any more: keep no buffer
        while True:
            with self._lock:
                if self._has_room():
                    behind = patches.add(fields) > 1   # not composable: send the older patch now
                    break
            self._make_room()
        moment = time.monotonic()
        if moment >= self._retry_at and (behind or moment - self._last_flush >= self._flush_interval):
            self._wake()

    def log(self, level: str, message: str, **fields: Any) -> None:
        entry = self.make_entry(level, message, fields)
        if self.abandoned:
            return
        while True:
            with self._lock:
                if self._has_room():
                    self._logs.append(entry)
                    full = len(self._logs) >= LOG_BATCH
                    break
            self._make_room()
        moment = time.monotonic()
        if moment >= self._retry_at and (full or moment - self._last_flush >= self._flush_interval):
            self._wake()

    def usage(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        self.check_usage(tokens, cost)
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
        """Back-pressure: while the buffers are full, send them from this thread (at the
        backoff's pace while the server is unreachable) or wait for another sender to."""
        while not self._room_or_turn():
            self.flush()

    def _has_room(self) -> bool:
        """The buffers can take another call (the caller holds ``_lock``)."""
        return self.abandoned or (len(self._logs) + self._outbox_logs < self._max_buffered_logs
                                  and self._progress.count + self._meta.count < MAX_QUEUED_PATCHES)

    def _room_or_turn(self) -> bool:
        """True once the buffers have room; False when it is time for this thread to send."""
        with self._room:
            while not self._has_room():
                wait = self._retry_at - time.monotonic()
                if wait <= 0:
                    return False
                self._room.wait(wait)
            return True

    def _flush_if_due(self, *, now: bool = False) -> None:
        moment = time.monotonic()
        if moment >= self._retry_at and (now or moment - self._last_flush >= self._flush_interval):
            self._wake()

    # -- the owner's side (runner, client) ----------------------------------------------
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
        """Seconds since the server last heard from this job."""
        return time.monotonic() - self._last_write

    def backing_off(self) -> bool:
        """A send failed recently: nothing is sent automatically before the retry time."""
        return time.monotonic() < self._retry_at

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._outbox or self._logs or self._progress or self._meta or self._tokens or self._cost)

    def due(self) -> bool:
        return (not self.backing_off() and time.monotonic() - self._last_flush >= self._flush_interval
                and self.has_pending())

    def tend(self, heartbeat_interval: float) -> bool:
        """One look by a background thread: send what is due, or a heartbeat after
        ``heartbeat_interval`` of silence.  True when it sent (or tried to)."""
        if self.abandoned or self.backing_off():
            return False
        if self.due():
            self.flush()
        elif self.idle_for() >= heartbeat_interval:
            self.flush(heartbeat=True)
        else:
            return False
        return True

    def enqueue(self, op: Op) -> None:
        """Put ``op`` in the outbox behind everything the job buffered so far."""
        with self._flushing:
            with self._lock:
                self._form_ops()
                self._outbox.append(op)

    def flush(self, *, heartbeat: bool = False) -> bool:
        """Send the outbox, then what is buffered: logs first, then progress, meta and
        usage in reports whose answers carry the stop flag.  ``heartbeat`` sends a report
        even with nothing buffered.

        True when everything was delivered (or is no longer wanted: the session was
        finalized elsewhere).  False when the server could not be reached: the undelivered
        request stays first in the outbox and automatic sends pause for the backoff."""
        with self._flushing:
            if not self._send_outbox():
                return False
            with self._lock:
                self._form_ops(heartbeat=heartbeat)
                self._last_flush = time.monotonic()
            return self._send_outbox()

    def _form_ops(self, *, heartbeat: bool = False) -> None:
        """Move the buffers into the outbox as requests (the caller holds ``_lock``)."""
        logs, self._logs = self._logs, []
        reports = [{"progress": p, "meta": m, "usage": None}
                   for p, m in itertools.zip_longest(self._progress.take(), self._meta.take())]
        usage = {"tokens": self._tokens, "cost": self._cost} if self._tokens or self._cost else None
        self._tokens, self._cost = 0, 0.0
        self._outbox_logs += len(logs)
        for start in range(0, len(logs), LOG_BATCH):
            self._outbox.append(Op("logs", logs[start:start + LOG_BATCH]))
        if not reports and (usage or (heartbeat and not self._outbox)):
            reports = [{"progress": None, "meta": None, "usage": None}]
        if reports:
            reports[0]["usage"] = usage
        self._outbox.extend(Op("report", report) for report in reports)

    def _send_outbox(self) -> bool:
        if self.abandoned:
            self._drop_everything()
            return True
        sent = False
        while self._outbox:
            op = self._outbox[0]
            if op.kind == "logs" and not op.tried and not self._fit(op):
                continue
            op.tried = True
            try:
                answer = self._transport.send(self.session_id, op)
            except RetryLater as exc:
                self._failed(exc)
                return False
            except LogsFull as exc:
                self._log_stored, self._log_cap = exc.stored, exc.cap
                self._outbox[0] = Op("logs", op.payload)   # nothing was stored: cut it anew
                continue
            except SessionGone:
                self.abandon()
                return True
            except Rejected as exc:
                self.rejection = str(exc)
                self.give_up(f"the server refused a report ({exc})")
                return True
            self._pop()
            sent = True
            self._answered(op, answer)
        if sent:
            self._written()
        return True

    def _fit(self, op: Op) -> bool:
        """Cut a log batch to the room under the session's cap, keeping one slot for the
        final flush's note about the rest; False when nothing of it fits (it is dropped
        and counted: only the cap refuses entries)."""
        if self._log_cap is None:
            return True
        room = max(self._log_cap - self._log_stored - (0 if self._closing else 1), 0)
        entries = op.payload
        if len(entries) <= room:
            return True
        self.refused_logs += len(entries) - room
        with self._lock:
            self._outbox_logs -= len(entries) - room
        op.payload = entries[:room]
        if room:
            return True
        self._pop()
        return False

    def _pop(self) -> None:
        with self._lock:
            op = self._outbox.popleft()
            if op.kind == "logs":
                self._outbox_logs -= len(op.payload)

    def _answered(self, op: Op, answer: Any) -> None:
        if op.kind == "logs":
            self._log_stored = answer
        elif op.kind == "report":
            self.stop_news_at = time.monotonic()
            if answer:
                self.request_stop("stop requested")
        elif op.kind == "create":
            self.session_id = answer

    def _failed(self, exc: RetryLater) -> None:
        """Wait before the next automatic send, longer after each failure in a row."""
        self._retry_at = time.monotonic() + self._backoff.failed(exc.retry_after)
        if self._backoff.failures == 1:
            self.logger.warning("session %s: %s unreachable (%s); its reports wait and are retried",
                                self.session_id, self.peer, exc)

    def _written(self) -> None:
        self._last_write = time.monotonic()
        self._retry_at = 0.0
        failures = self._backoff.succeeded()
        if failures:
            self.logger.info("session %s: %s reachable again after %d failed attempts",
                             self.session_id, self.peer, failures)
        with self._room:
            self._room.notify_all()

    def final_flush(self, deadline: float) -> bool:
        """Deliver everything before the final state, waiting out an unreachable server
        until ``deadline`` (``time.monotonic``), then end the log with the note about
        entries the cap refused.  False when it gave up; what is unsent stays pending."""
        if not self.drain(deadline):
            return False
        if not self.refused_logs or self.abandoned:
            return True
        refused = self.refused_logs
        self._closing = True
        with self._lock:
            self._logs.append(self.make_entry("warning", refused_note(refused, self._log_cap), {}))
        if not self.drain(deadline):
            return False
        if self.refused_logs > refused:
            self.logger.warning("session %s: %s, and the log had no room left to say so", self.session_id,
                        refused_note(refused, self._log_cap))
        return True

    def drain(self, deadline: float) -> bool:
        """Flush until nothing is pending; False once the next try would pass ``deadline``."""
        while True:
            if self.flush() and (self.abandoned or not self.has_pending()):
                return True
            wait = max(self._retry_at - time.monotonic(), 0.0)
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)

    def pending_ops(self) -> List[Op]:
        """Everything not yet delivered, as requests in sending order (for a spool)."""
        with self._flushing:
            with self._lock:
                self._form_ops()
                return list(self._outbox)

    def pending_log_entries(self) -> int:
        with self._lock:
            return len(self._logs) + self._outbox_logs

    def give_up(self, reason: str) -> None:
        """The server refuses what retrying cannot change (a bad token, say): say so once,
        send nothing more, and let the job go on — no stop flag, the session was not
        finalized."""
        if self.abandoned:
            return
        self.rejection = reason
        self.logger.error("session %s: %s; nothing more is sent for this run, the job goes on",
                          self.session_id, reason)
        self._send_nothing_more()

    def abandon(self) -> None:
        """The session no longer takes our reports: drop buffers, make the job stop."""
        self.abandoned = True
        self.request_stop(self.stop_reason or "the session was finalized")
        with self._room:
            self._room.notify_all()

    def let_go(self) -> None:
        """Another process or attempt reports on the session now: whatever this run is
        still asked to report is ignored, and nothing more is sent (no stop flag: the job
        was not told to stop)."""
        self.released = True
        self._send_nothing_more()

    def _send_nothing_more(self) -> None:
        self.abandoned = True
        self._drop_everything()
        with self._room:
            self._room.notify_all()

    def _drop_everything(self) -> None:
        with self._lock:
            self._outbox.clear()
            self._outbox_logs = 0
            self._logs = []
            self._progress.take()
            self._meta.take()
            self._tokens, self._cost = 0, 0.0
