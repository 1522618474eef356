"""The in-memory store: plain dicts behind exactly one ``threading.Lock``.

Every public method takes the lock for its whole body, so each is atomic with respect to
every other; private helpers assume the lock is held and never call public methods (the
lock is not re-entrant).  Records handed out are copies.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Callable

from . import validation as check
from .base import DEFAULT_MAX_LOG_ENTRIES, SessionRepository, replay_of
from .cursors import decode_cursor, encode_cursor
from .errors import LogLimitExceeded, SessionNotFound
from .merge import merge_patch, merge_progress
from .records import (AppendResult, Claim, CleanupCounts, LogEntry, LogPage, Page, ProgressAck, Session,
                      Snapshot, Worker, utcnow)
from .states import (RUNNER_LOST, State, check_move, check_reportable, cleanup_states,
                     parse_terminal_state, wanted_states,
                     stop_target)
from .usage import engine_of, group_usage, hour_of


def _copy(session: Session) -> Session:
    return dataclasses.replace(
        session, progress=copy.deepcopy(session.progress), meta=copy.deepcopy(session.meta),
        params=copy.deepcopy(session.params), result=copy.deepcopy(session.result),
        usage=dict(session.usage))


class MemorySessionRepository(SessionRepository):
    name = "memory"

    def __init__(self, *, max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES,
                 clock: Callable[[], datetime] = utcnow):
        self._lock = threading.Lock()
        self._clock = clock
        self._max_log_entries = max_log_entries
        self._sessions: dict[str, Session] = {}
        self._position: dict[str, int] = {}       # id -> insertion position (the list key)
        self._by_position: dict[int, str] = {}    # insertion order, oldest first
        self._next_position = 1
        self._logs: dict[str, list[LogEntry]] = {}
        self._requests: dict[str, list] = {}      # digest -> [fingerprint, status, body, session_id, expires_at]
        self._usage: dict[tuple[str, str, str, datetime], list] = defaultdict(lambda: [0, 0, 0.0])
        self._workers: dict[str, Worker] = {}
        self._lease: tuple[str, datetime] | None = None        # scheduler lease: holder, expiry
        self._ticks: dict[tuple[str, int], str] = {}             # (job, tick) -> holder

    # -- helpers (lock held) ------------------------------------------------------
    def _load(self, session_id: str) -> Session:
        key = check.session_key(session_id)
        try:
            return self._sessions[key]
        except KeyError:
            raise SessionNotFound(key) from None

    def _newest_first(self, before: int | None = None):
        for position in reversed(self._by_position):
            if before is None or position < before:
                yield position, self._sessions[self._by_position[position]]

    # -- sessions -------------------------------------------------------------------
    def create(self, *, kind, owner, label="", params=None, meta=None):
        check.check_new_session(kind, label, owner, params=params, meta=meta)
        with self._lock:
            now = self._clock()
            session = Session(
                id=str(uuid.uuid4()), kind=kind, label=label, owner=owner, state=State.PENDING,
                stop_requested=False, progress={}, meta=copy.deepcopy(meta or {}),
                params=copy.deepcopy(params or {}), result=None, error=None,
                usage={"tokens": 0, "cost": 0.0}, created_at=now, started_at=None,
                updated_at=now, finished_at=None, heartbeat_at=None, log_count=0)
            self._sessions[session.id] = session
            self._position[session.id] = self._next_position
            self._by_position[self._next_position] = session.id
            self._next_position += 1
            self._logs[session.id] = []
            self._usage[(owner, kind, engine_of(session.meta), hour_of(now))][0] += 1
            return _copy(session)

    def get(self, session_id):
        with self._lock:
            return _copy(self._load(session_id))

    def list_sessions(self, *, state=None, owner=None, kind=None, q=None, limit=50, cursor=None, states=None):
        check.check_limit("limit", limit, 1, check.MAX_LIST_LIMIT)
        before = decode_cursor(cursor)
        wanted = wanted_states(state, states)
        needle = q.casefold() if q else None
        with self._lock:
            items: list[tuple[int, Session]] = []
            for position, session in self._newest_first(before):
                if ((wanted is None or session.state in wanted)
                        and (owner is None or session.owner == owner)
                        and (kind is None or session.kind == kind)
                        and (needle is None or needle in session.label.casefold())):
                    items.append((position, session))
                    if len(items) > limit:
                        break
            more = len(items) > limit
            items = items[:limit]
            next_cursor = encode_cursor(items[-1][0]) if more else None
            return Page([_copy(s) for _, s in items], next_cursor)

    def snapshot(self, *, limit_per_state=200):
        check.check_limit("limit", limit_per_state, 1, check.MAX_SNAPSHOT_LIMIT)
        with self._lock:
            counts = {s.value: 0 for s in State}
            sessions: dict[str, list[Session]] = {s.value: [] for s in State}
            for _, session in self._newest_first():
                counts[session.state.value] += 1
                bucket = sessions[session.state.value]
                if len(bucket) < limit_per_state:
                    bucket.append(_copy(session))
            return Snapshot(self._clock(), counts, sessions)

    # -- transitions -------------------------------------------------------------------
    def start(self, session_id, *, worker_id=None):
        check.check_worker_id(worker_id)
        with self._lock:
            session = self._load(session_id)
            check_move(session.id, session.state, "start", State.RUNNING)
            now = self._clock()
            session.state, session.started_at, session.worker_id = State.RUNNING, now, worker_id
            session.heartbeat_at = session.updated_at = now
            return _copy(session)

    def report_progress(self, session_id, *, progress=None, meta=None, usage=None):
        check.check_object("progress", progress)
        check.check_object("meta", meta)
        tokens, cost = check.check_usage(usage)
        with self._lock:
            session = self._load(session_id)
            check_reportable(session.id, session.state, "progress")
            check.check_usage_totals(session.usage["tokens"] + tokens, session.usage["cost"] + cost)
            now = self._clock()
            merged_meta = merge_patch(session.meta, meta) if meta else session.meta
            if tokens or cost:
                key = (session.owner, session.kind, engine_of(merged_meta), hour_of(now))
                self._check_rollups(key, tokens, cost)
            if progress:
                session.progress = merge_progress(session.progress, progress)
            session.meta = merged_meta
            if tokens or cost:
                session.usage = {"tokens": session.usage["tokens"] + tokens,
                                 "cost": session.usage["cost"] + cost}
                row = self._usage[key]
                row[1] += tokens
                row[2] += cost
            session.heartbeat_at = session.updated_at = now
            return ProgressAck(session.state, session.stop_requested)

    def _check_rollups(self, key: tuple, tokens: int, cost: float) -> None:
        """The SQL stores' cap on their hourly and daily rollup rows.  Only hourly rows are
        kept here, and a day's total (its 24 hours summed) bounds its hour's, so checking
        the day checks both.  Under the lock."""
        midnight = key[3].replace(hour=0)
        day = [self._usage.get((*key[:3], midnight + timedelta(hours=h)), (0, 0, 0.0)) for h in range(24)]
        check.check_usage_totals(sum(r[1] for r in day) + tokens, sum(r[2] for r in day) + cost,
                                 total=check.ACROSS_SESSIONS)

    def request_stop(self, session_id):
        with self._lock:
            session = self._load(session_id)
            target = stop_target(session.state)
            check_move(session.id, session.state, "stop", target)
            now = self._clock()
            if target is State.STOPPED:
                session.state, session.finished_at = State.STOPPED, now
            session.stop_requested = True
            session.updated_at = now
            return _copy(session)

    def finish(self, session_id, state, *, result=None, error=None):
        state = parse_terminal_state(state)
        check.check_object("result", result)
        check.check_error(error)
        with self._lock:
            session = self._load(session_id)
            if session.state is state:
                return _copy(session)            # a retried finish: change nothing
            check_move(session.id, session.state, "finish", state)
            now = self._clock()
            session.state, session.finished_at, session.updated_at = state, now, now
            session.result, session.error = copy.deepcopy(result), error
            return _copy(session)

    # -- logs --------------------------------------------------------------------------------
    def append_logs(self, session_id, entries):
        batch = check.check_log_batch(entries)
        with self._lock:
            session = self._load(session_id)
            check_reportable(session.id, session.state, "logs")
            stored = self._logs[session.id]
            if len(stored) + len(batch) > self._max_log_entries:
                raise LogLimitExceeded(session.id, len(stored), len(batch), self._max_log_entries)
            now = self._clock()
            first = len(stored) + 1
            stored.extend(LogEntry(first + i, now, e.level, e.message, copy.deepcopy(e.fields), e.at)
                          for i, e in enumerate(batch))
            session.log_count = len(stored)
            session.heartbeat_at = session.updated_at = now
            return AppendResult(first, len(stored))

    def read_logs(self, session_id, *, after=0, limit=1000):
        check.check_limit("after", after, 0, check.MAX_LOG_SEQ)
        check.check_limit("limit", limit, 1, check.MAX_LOG_PAGE)
        with self._lock:
            session = self._load(session_id)
            # seq n sits at index n-1, so a page is one slice.
            entries = self._logs[session.id][after:after + limit]
            return LogPage(list(entries), entries[-1].seq if entries else after)

    # -- maintenance ----------------------------------------------------------------------------
    def sweep_heartbeats(self, timeout):
        with self._lock:
            now = self._clock()
            failed = []
            for session in self._sessions.values():
                if (session.state is State.RUNNING and session.heartbeat_at is not None
                        and session.heartbeat_at < now - timeout):
                    check_move(session.id, session.state, "heartbeat lost", State.FAILED)
                    session.state, session.error = State.FAILED, "heartbeat lost"
                    session.finished_at = session.updated_at = now
                    failed.append(session.id)
            return failed

    def touch_queued(self, session_ids):
        keys = check.session_keys(session_ids)
        if not keys:
            return 0
        with self._lock:
            now = self._clock()
            touched = 0
            for key in keys:
                session = self._sessions.get(key)
                if session is not None and session.state is State.PENDING:
                    session.heartbeat_at = session.updated_at = now
                    touched += 1
            return touched

    def sweep_queued(self, timeout, kinds):
        wanted = frozenset(check.kind_names(kinds))
        if not wanted:
            return []
        with self._lock:
            now = self._clock()
            cutoff = now - timeout
            failed = []
            for session in self._sessions.values():       # insertion order: oldest first
                if (session.state is State.PENDING and session.kind in wanted
                        and (session.heartbeat_at or session.created_at) < cutoff):
                    check_move(session.id, session.state, "runner lost", State.FAILED)
                    session.state, session.error = State.FAILED, RUNNER_LOST
                    session.finished_at = session.updated_at = now
                    failed.append(session.id)
            return failed

    def cleanup(self, older_than, *, states=None, dry_run=False):
        wanted = cleanup_states(states)
        with self._lock:
            cutoff = self._clock() - older_than
            doomed = [s.id for s in self._sessions.values()
                      if s.state in wanted and s.finished_at is not None and s.finished_at < cutoff]
            log_entries = sum(len(self._logs[i]) for i in doomed)
            if not dry_run:
                for session_id in doomed:
                    del self._sessions[session_id], self._logs[session_id]
                    del self._by_position[self._position.pop(session_id)]
                gone = set(doomed)
                now = self._clock()
                self._requests = {d: r for d, r in self._requests.items() if r[3] not in gone and r[4] > now}
            return CleanupCounts(len(doomed), log_entries)

    # -- idempotent requests -----------------------------------------------------------------
    @contextlib.contextmanager
    def once(self, digest, fingerprint, *, keep):
        """The claim is taken under the lock and the answer kept under it again; between
        them the request runs (taking the lock for its own calls), and a repeat meanwhile
        is IdempotencyKeyInFlight."""
        with self._lock:
            now = self._clock()
            entry = self._requests.get(digest)
            if entry is not None and entry[4] > now:
                replay = replay_of(entry[0], entry[1], entry[2], fingerprint)
            else:
                replay = None
                self._requests[digest] = [fingerprint, None, None, None, now + keep]
        if replay is not None:
            yield Claim(replay)
            return
        claim = Claim()
        try:
            yield claim
        finally:
            with self._lock:
                if claim.answer is None:
                    self._requests.pop(digest, None)
                else:
                    status, body, session_id = claim.answer
                    self._requests[digest] = [fingerprint, status, body, session_id, self._clock() + keep]

    # -- usage and workers -------------------------------------------------------------------------
    def usage(self, *, by, since=None, owner=None):
        since = None if since is None else check.check_time("since", since)
        with self._lock:
            rows = [(key, list(values)) for key, values in self._usage.items()]
        return group_usage(rows, by=by, since=since, owner=owner)

    def heartbeat_worker(self, *, worker_id, host, pid, active=0, rss_bytes=None, version=None):
        check.check_worker(worker_id, host, pid, active, rss_bytes, version)
        with self._lock:
            now = self._clock()
            known = self._workers.get(worker_id)
            worker = Worker(worker_id, host, pid, active, rss_bytes, version, now,
                            known.started_at if known else now)
            self._workers[worker_id] = worker
            return worker

    def claim_tick(self, job, tick, *, holder, lease):
        with self._lock:
            now = self._clock()
            current = self._lease
            if (job, tick) in self._ticks:
                return False                 # run already; a late caller must not take the lease
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self._lease = (holder, now + lease)
            self._ticks[(job, tick)] = holder
            for old in [k for k in self._ticks if k[0] == job and k[1] < tick - 10_000]:
                del self._ticks[old]
            return True

    def list_ticks(self, job, *, limit=100):
        with self._lock:
            runs = sorted(((t, h) for (j, t), h in self._ticks.items() if j == job), reverse=True)
        return runs[:limit]

    def list_workers(self):
        with self._lock:
            return sorted(self._workers.values(), key=lambda w: w.last_seen, reverse=True)

