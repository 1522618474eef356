"""The session repository contract every store implements.

Routes, the runner, the CLI and the scheduler talk only to this interface.  Each method is
one atomic operation: it either happens whole or raises and changes nothing.
"""
from __future__ import annotations

import abc
from datetime import timedelta
from typing import Any, Callable, ContextManager, Iterable, Iterator

from .errors import IdempotencyKeyInFlight, IdempotencyKeyReused, SessionNotFound
from .records import (AppendResult, Claim, CleanupCounts, Replay, LogEntry, LogInput, LogPage, Page,
                      ProgressAck, Session, Snapshot, UsageRow, Worker)
from .states import State

DEFAULT_MAX_LOG_ENTRIES = 100_000


class SessionRepository(abc.ABC):
    """Abstract store.  ``name`` is what ``/healthz`` reports ("memory", "sqlite", "postgresql")."""

    name: str = "abstract"

    # -- sessions -----------------------------------------------------------------
    @abc.abstractmethod
    def create(self, *, kind: str, owner: str, label: str = "", params: dict | None = None,
               meta: dict | None = None) -> Session:
        """Store a new ``pending`` session and return it.

        Also counts the session in the usage rollup of its creation hour.
        Raises ValidationError for a bad kind, label, owner, params or meta.
        """

    @abc.abstractmethod
    def get(self, session_id: str) -> Session:
        """Return the session.  Raises SessionNotFound (also for a malformed id)."""

    @abc.abstractmethod
    def list_sessions(self, *, state: State | None = None, owner: str | None = None,
                      kind: str | None = None, q: str | None = None, limit: int = 50,
                      cursor: str | None = None, states: Iterable[State] | None = None) -> Page:
        """Return one page of sessions, newest first, and the cursor of the next page.

        ``states`` admits any of several states (e.g. every finished one), beside or instead
        of ``state``.  ``q`` matches a case-insensitive substring of the label.  ``next_cursor`` is None on
        the last page.  Raises ValidationError for a limit outside 1..200 or a malformed cursor.
        """

    @abc.abstractmethod
    def snapshot(self, *, limit_per_state: int = 200) -> Snapshot:
        """Return counts per state and the newest ``limit_per_state`` sessions of each state,
        all read in one consistent view: every session appears exactly once."""

    # -- transitions --------------------------------------------------------------
    @abc.abstractmethod
    def start(self, session_id: str, *, worker_id: str | None = None) -> Session:
        """Move pending → running, set ``started_at``, the heartbeat and ``worker_id`` (who
        runs it: a runner process, a Celery worker, a client); return the session.
        Raises SessionNotFound, InvalidTransition, ValidationError (bad ``worker_id``)."""

    @abc.abstractmethod
    def report_progress(self, session_id: str, *, progress: dict | None = None,
                        meta: dict | None = None, usage: dict | None = None) -> ProgressAck:
        """Merge ``progress`` and ``meta`` (RFC 7396), add usage deltas to the session and its
        hourly rollup, refresh the heartbeat.  Returns the stored state and stop flag.
        Raises SessionNotFound, InvalidTransition (session not running), ValidationError."""

    @abc.abstractmethod
    def request_stop(self, session_id: str) -> Session:
        """pending → stopped; running → running with ``stop_requested``.  Returns the session.
        Raises SessionNotFound, InvalidTransition (terminal)."""

    @abc.abstractmethod
    def finish(self, session_id: str, state: State, *, result: dict | None = None,
               error: str | None = None) -> Session:
        """Move to a terminal ``state`` with result/error and ``finished_at`` in one write.
        Repeating the call on a session already in ``state`` returns it unchanged.
        Raises SessionNotFound, InvalidTransition, ValidationError (non-terminal target)."""

    # -- logs -----------------------------------------------------------------------
    @abc.abstractmethod
    def append_logs(self, session_id: str, entries: Iterable[LogInput | dict[str, Any]]) -> AppendResult:
        """Store a batch with server timestamps and the next gapless ``seq`` numbers.
        Refreshes the heartbeat.  Raises SessionNotFound, InvalidTransition (terminal),
        ValidationError (bad entry), LogLimitExceeded (batch would cross the cap; nothing stored)."""

    @abc.abstractmethod
    def read_logs(self, session_id: str, *, after: int = 0, limit: int = 1000) -> LogPage:
        """Return entries with ``seq > after`` in order, at most ``limit`` (1..5000).
        ``next_after`` is the last seq returned, or ``after`` when nothing was.
        Raises SessionNotFound, ValidationError."""

    def iter_logs(self, session_id: str, *, batch_size: int = 1000) -> Iterator[LogEntry]:
        """Yield every entry in seq order, reading ``batch_size`` at a time so memory stays flat.

        Raises SessionNotFound before the first entry; a session removed mid-stream ends it.
        """
        page = self.read_logs(session_id, after=0, limit=batch_size)
        while page.entries:
            yield from page.entries
            try:
                page = self.read_logs(session_id, after=page.next_after, limit=batch_size)
            except SessionNotFound:  # removed by cleanup while streaming: end cleanly
                return

    # -- maintenance ------------------------------------------------------------------
    @abc.abstractmethod
    def sweep_heartbeats(self, timeout: timedelta) -> list[str]:
        """Fail every running session whose heartbeat is older than ``timeout`` with error
        "heartbeat lost"; return their ids.  Safe to run twice or concurrently."""

    @abc.abstractmethod
    def touch_queued(self, session_ids: Iterable[str]) -> int:
        """Refresh ``heartbeat_at`` and ``updated_at`` of those of ``session_ids`` that are
        still ``pending``, in one transaction; return how many sessions were touched (each
        once, however often its id is given).

        The runner process that holds these sessions in its queue calls this periodically,
        so ``sweep_queued`` can tell its sessions from those of a process that died.  An
        unknown or malformed id, or a session no longer pending (started, stopped, failed
        meanwhile), is simply not touched: it is no error, since the runner's view of its
        queue may lag the store.  Never raises for the ids; an empty iterable returns 0."""

    @abc.abstractmethod
    def sweep_queued(self, timeout: timedelta, kinds: Iterable[str]) -> list[str]:
        """Fail every ``pending`` session whose ``kind`` is in ``kinds`` and whose
        ``heartbeat_at`` (``created_at`` when never touched) is older than now − ``timeout``:
        state ``failed``, ``finished_at`` and ``updated_at`` = now, error
        ``states.RUNNER_LOST``; return their ids, oldest first.

        ``kinds`` are those an in-process runner executes (its queue is lost with its
        process); pending sessions of other kinds are driven from outside and never
        touched, nor are running sessions (``sweep_heartbeats`` covers them).  Each move is
        conditional on the session still being pending in the same transaction, so a
        session started or stopped meanwhile is left alone; safe to run twice or
        concurrently (a session is failed once, counters stay exact).  Empty ``kinds``
        fails nothing and returns []."""

    @abc.abstractmethod
    def cleanup(self, older_than: timedelta, *, states: Iterable[State] | None = None,
                dry_run: bool = False) -> CleanupCounts:
        """Remove whole terminal sessions (row and logs) finished before now − ``older_than``,
        only those in ``states`` when given (per-state retention).  Returns what was (or,
        with ``dry_run``, would be) removed.  Usage rollups survive.  Pending and running
        sessions are never removed.  The idempotency keys of removed sessions go with them,
        and expired keys too.  Raises ValidationError for a non-terminal state."""

    # -- idempotent requests ------------------------------------------------------------------
    @abc.abstractmethod
    def once(self, digest: str, fingerprint: str, *, keep: timedelta) -> ContextManager[Claim]:
        """Run a request at most once per ``digest`` (a hash of token, method, path and
        idempotency key): ``with repo.once(...) as claim:`` gives ``claim.replay``, the
        first answer, when the digest was answered before — raising IdempotencyKeyReused
        when that request had another ``fingerprint`` (body hash) — and otherwise lets the
        block run the request and ``claim.settle(status, body, session_id)`` its answer,
        kept for ``keep`` and removed with ``session_id``'s session.  A block that raises,
        or ends unsettled, leaves nothing remembered: its repeat runs anew.

        On the SQL stores the block's own store calls join one transaction with the
        claim, so the work and its kept answer commit together or not at all; a repeat
        arriving meanwhile waits for that commit and replays it.  The memory store keeps
        the claim from the start and answers such a repeat IdempotencyKeyInFlight."""

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once what this thread's ``once`` block wrote is committed (at
        once outside one): a job queued for another thread must find its session."""
        action()

    # -- usage and workers -----------------------------------------------------------------
    @abc.abstractmethod
    def usage(self, *, by: str, since=None, owner: str | None = None) -> list[UsageRow]:
        """Sum the hourly rollups from ``since`` on, grouped by owner, kind or engine.
        ``owner`` restricts to one owner (what a plain user may see).
        Raises ValidationError for an unknown grouping."""

    @abc.abstractmethod
    def heartbeat_worker(self, *, worker_id: str, host: str, pid: int, active: int = 0,
                         rss_bytes: int | None = None, version: str | None = None) -> Worker:
        """Insert or update a worker's record with ``last_seen`` = now; return it.
        ``started_at`` is set by the first heartbeat of a worker id and kept after."""

    @abc.abstractmethod
    def list_workers(self) -> list[Worker]:
        """Return every known worker, most recently seen first."""

    # -- scheduler ----------------------------------------------------------------------
    @abc.abstractmethod
    def claim_tick(self, job: str, tick: int, *, holder: str, lease: timedelta) -> bool:
        """Decide, atomically across every process on this store, whether ``holder`` runs
        tick number ``tick`` of ``job``: only the holder of the scheduler lease (free,
        expired, or already its own — then renewed for ``lease``) may, and only once per
        tick.  True for exactly one caller per tick.  Records the run."""

    @abc.abstractmethod
    def list_ticks(self, job: str, *, limit: int = 100) -> list[tuple[int, str]]:
        """The newest runs of ``job`` as (tick, holder), newest first."""

    def close(self) -> None:
        """Release connections; the default store holds none."""


def replay_of(stored_fingerprint: str, status: int | None, body: str | None, fingerprint: str) -> Replay:
    """What a repeat of a claimed request gets, on every store: its first answer, or the
    refusal that says why not."""
    if stored_fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if status is None:
        raise IdempotencyKeyInFlight()
    return Replay(status, body or "")
