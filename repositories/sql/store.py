"""The SQL session store: one transaction per public method, Core statements built once.

Rows a method will change are read ``FOR UPDATE`` (PostgreSQL) or inside ``BEGIN
IMMEDIATE`` (SQLite), so every
read-merge-write is serialised per session and a state change, its timestamps, its
counters and its usage rollup commit together or not at all.
"""
from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Callable

from sqlalchemy import Engine

from .. import validation as check
from ..base import DEFAULT_MAX_LOG_ENTRIES, SessionRepository
from ..cursors import decode_cursor, encode_cursor
from ..errors import SessionNotFound
from ..merge import merge_patch, merge_progress
from ..records import Page, ProgressAck, Snapshot, utcnow
from ..states import (State, check_move, check_reportable, parse_terminal_state,
                      stop_target, wanted_states)
from ..usage import day_start, engine_of, hour_of
from . import statements
from .engine import Transactions, make_engine
from .logs import SqlLogs
from .maintenance import SqlMaintenance
from .requests import SqlRequests
from .models import Base
from .rows import to_session
from .statements import move_counts


class SqlSessionRepository(SqlLogs, SqlMaintenance, SqlRequests, SessionRepository):
    def __init__(self, engine: Engine, *, max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES,
                 clock: Callable[[], datetime] = utcnow, owns_engine: bool = False):
        self.transactions = Transactions(engine)
        self._engine = self.transactions.engine
        self._clock = clock
        self._max_log_entries = max_log_entries
        self._owns_engine = owns_engine
        self.name = engine.dialect.name

    @classmethod
    def from_url(cls, url: str, **options) -> "SqlSessionRepository":
        return cls(make_engine(url), owns_engine=True, **options)

    def create_schema(self) -> None:
        """Create every table (tests and benchmarks; deployments use ``flask db upgrade``)."""
        Base.metadata.create_all(self._engine)

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    # -- helpers (inside a transaction) -------------------------------------------------
    def _tx(self, *, write: bool = True, snapshot: bool = False):
        return self.transactions(write=write, snapshot=snapshot)

    @staticmethod
    def _fetch(tx, session_id: str, statement=statements.SELECT_SESSION):
        """Run a by-id lookup (``statement``); SessionNotFound if there is no such session."""
        key = check.session_key(session_id)
        row = tx.first(statement, {"p_id": key})
        if row is None:
            raise SessionNotFound(key)
        return row

    @staticmethod
    def _write(tx, statement, pk: int, **values):
        return to_session(tx.first(statement, {"p_pk": pk, **{f"p_{k}": v for k, v in values.items()}}))

    def _add_usage(self, tx, owner: str, kind: str, engine: str, moment: datetime, *,
                   sessions: int = 0, tokens: int = 0, cost: float = 0.0) -> None:
        """Add to the hourly and the daily rollup row, in the caller's transaction; refuse
        (ValidationError) a report that takes either past the totals' cap."""
        hourly, daily = statements.ADD_USAGE[self.name]
        values = {"p_owner": owner, "p_kind": kind, "p_engine": engine, "p_sessions": sessions,
                  "p_tokens": tokens, "p_cost": cost}
        for statement, period in ((hourly, {"p_hour": hour_of(moment)}), (daily, {"p_day": day_start(moment)})):
            totals = tx.first(statement, {**values, **period})
            check.check_usage_totals(totals.tokens, totals.cost, total=check.ACROSS_SESSIONS)     # raising rolls the report back

    # -- sessions ----------------------------------------------------------------------------
    def create(self, *, kind, owner, label="", params=None, meta=None):
        check.check_new_session(kind, label, owner, params=params, meta=meta)
        meta = copy.deepcopy(meta or {})
        with self._tx() as tx:
            now = self._clock()
            row = tx.first(statements.INSERT_SESSION, {
                "id": str(uuid.uuid4()), "kind": kind, "label": label, "owner": owner,
                "state": State.PENDING.value, "stop_requested": False, "progress": {}, "meta": meta,
                "params": params or {}, "result": None, "error": None, "tokens": 0, "cost": 0.0,
                "created_at": now, "updated_at": now, "log_count": 0, "worker_id": None})
            move_counts(tx, {State.PENDING: 1})
            self._add_usage(tx, owner, kind, engine_of(meta), now, sessions=1)
            return to_session(row)

    def get(self, session_id):
        with self._tx(write=False) as tx:
            return to_session(self._fetch(tx, session_id))

    def list_sessions(self, *, state=None, owner=None, kind=None, q=None, limit=50, cursor=None, states=None):
        check.check_limit("limit", limit, 1, check.MAX_LIST_LIMIT)
        before = decode_cursor(cursor)
        wanted = wanted_states(state, states)
        if wanted is not None and not wanted:
            return Page([], None)               # state and states that exclude each other
        one = wanted is not None and len(wanted) == 1
        params = {"p_limit": limit + 1, "p_state": next(iter(wanted)).value if one else None,
                  "p_owner": owner, "p_kind": kind, "p_q": statements.contains_pattern(q) if q else None, "p_before": before}
        query = statements.list_query(self.name, one, owner is not None, kind is not None,
                                      bool(q), before is not None,
                                      tuple(sorted(s.value for s in wanted)) if wanted and not one else None)
        with self._tx(write=False) as tx:
            rows = tx.execute(query, {k: v for k, v in params.items() if v is not None})
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([to_session(r) for r in rows], encode_cursor(rows[-1].pk) if more else None)

    def snapshot(self, *, limit_per_state=200):
        check.check_limit("limit", limit_per_state, 1, check.MAX_SNAPSHOT_LIMIT)
        with self._tx(write=False, snapshot=True) as tx:
            taken_at = self._clock()
            counts = {s.value: 0 for s in State}
            counts.update({state: int(n) for state, n in tx.execute(statements.SELECT_COUNTS)})
            buckets = {state.value: [to_session(row) for row in tx.execute(
                statements.SELECT_BUCKET, {"p_state": state.value, "p_limit": limit_per_state})]
                for state in State}
        return Snapshot(taken_at, counts, buckets)

    # -- transitions -----------------------------------------------------------------------------
    def start(self, session_id, *, worker_id=None):
        check.check_worker_id(worker_id)
        with self._tx() as tx:
            row = self._fetch(tx, session_id, statements.SELECT_STATE_LOCKED)
            check_move(row.id, State(row.state), "start", State.RUNNING)
            now = self._clock()
            move_counts(tx, {State.PENDING: -1, State.RUNNING: 1})
            return self._write(tx, statements.START, row.pk, state=State.RUNNING.value,
                               worker_id=worker_id, started_at=now, heartbeat_at=now, updated_at=now)

    def report_progress(self, session_id, *, progress=None, meta=None, usage=None):
        """The session row is locked, merged in Python and written back, and usage added to
        the rollups, all in one transaction: concurrent reports queue on the row."""
        check.check_object("progress", progress)
        check.check_object("meta", meta)
        tokens, cost = check.check_usage(usage)
        with self._tx() as tx:
            row = self._fetch(tx, session_id, statements.SELECT_REPORTED)
            check_reportable(row.id, State(row.state), "progress")
            check.check_usage_totals(row.tokens + tokens, row.cost + cost)
            now = self._clock()
            stored_meta = merge_patch(row.meta, meta) if meta else row.meta
            tx.execute(statements.REPORT, {
                "p_pk": row.pk, "p_progress": merge_progress(row.progress, progress) if progress else row.progress,
                "p_meta": stored_meta, "p_tokens": row.tokens + tokens, "p_cost": row.cost + cost, "p_now": now})
            if tokens or cost:
                self._add_usage(tx, row.owner, row.kind, engine_of(stored_meta), now, tokens=tokens,
                                cost=cost)
            return ProgressAck(State.RUNNING, bool(row.stop_requested))

    def request_stop(self, session_id):
        with self._tx() as tx:
            row = self._fetch(tx, session_id, statements.SELECT_STATE_LOCKED)
            current = State(row.state)
            target = stop_target(current)
            check_move(row.id, current, "stop", target)
            now = self._clock()
            if target is current:
                return self._write(tx, statements.RAISE_STOP_FLAG, row.pk, stop_requested=True,
                                   updated_at=now)
            move_counts(tx, {current: -1, target: 1})
            return self._write(tx, statements.CANCEL, row.pk, stop_requested=True, state=target.value,
                               finished_at=now, updated_at=now)

    def finish(self, session_id, state, *, result=None, error=None):
        state = parse_terminal_state(state)
        check.check_object("result", result)
        check.check_error(error)
        with self._tx() as tx:
            row = self._fetch(tx, session_id, statements.SELECT_SESSION_LOCKED)
            current = State(row.state)
            if current is state:
                return to_session(row)          # a retried finish: change nothing
            check_move(row.id, current, "finish", state)
            now = self._clock()
            move_counts(tx, {current: -1, state: 1})
            return self._write(tx, statements.FINISH, row.pk, state=state.value, result=result,
                               error=error, finished_at=now, updated_at=now)
