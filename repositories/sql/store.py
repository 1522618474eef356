"""The SQL session store: one transaction per public method, Core statements on hot paths.

Rows a method will change are read ``FOR UPDATE`` (PostgreSQL) or inside ``BEGIN
IMMEDIATE`` (SQLite), so every read-merge-write is serialised per session and a state
change, its timestamps, its counters and its usage rollup commit together or not at all.
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
from ..merge import merge_patch, merge_progress, self_contained_patch
from ..records import Page, ProgressAck, Snapshot, utcnow
from ..states import (State, check_move, check_reportable, parse_terminal_state,
                      stop_target, wanted_states)
from ..usage import day_start, engine_of, hour_of
from .engine import Transactions, make_engine
from .hotpath import DIALECTS
from .logs import SqlLogs
from .maintenance import SqlMaintenance
from .models import Base
from . import jsontext, statements
from .rows import add_usage, to_session
from .statements import move_counts


class SqlSessionRepository(SqlLogs, SqlMaintenance, SessionRepository):
    def __init__(self, engine: Engine, *, max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES,
                 clock: Callable[[], datetime] = utcnow, owns_engine: bool = False):
        self._transactions = Transactions(engine)
        self._engine = self._transactions.engine
        self._dialect = DIALECTS[engine.dialect.name]
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
        self._transactions.close()
        if self._owns_engine:
            self._engine.dispose()

    # -- helpers (inside a transaction) -------------------------------------------------
    def _tx(self, *, write: bool = True, snapshot: bool = False):
        return self._transactions(write=write, snapshot=snapshot)

    def _read_by_id(self, statement: str, session_id: str):
        """One row of a session, read outside any transaction; SessionNotFound if none."""
        key = check.session_key(session_id)
        row = self._transactions.read_row(statement, (key,))
        if row is None:
            raise SessionNotFound(key)
        return row

    @staticmethod
    def _fetch(connection, session_id: str, statement=statements.SELECT_SESSION):
        """Run a by-id lookup (``statement``); SessionNotFound if there is no such session."""
        key = check.session_key(session_id)
        row = connection.execute(statement, {"p_id": key}).first()
        if row is None:
            raise SessionNotFound(key)
        return row

    @staticmethod
    def _write(connection, statement, pk: int, **values):
        return to_session(connection.execute(
            statement, {"p_pk": pk, **{f"p_{k}": v for k, v in values.items()}}).one())

    # -- sessions ----------------------------------------------------------------------------
    def create(self, *, kind, owner, label="", params=None, meta=None):
        check.check_new_session(kind, label, owner, params=params, meta=meta)
        meta = copy.deepcopy(meta or {})
        with self._tx() as connection:
            now = self._clock()
            row = connection.execute(statements.INSERT_SESSION, {
                "id": str(uuid.uuid4()), "kind": kind, "label": label, "owner": owner,
                "state": State.PENDING.value, "stop_requested": False, "progress": {}, "meta": meta,
                "params": params or {}, "result": None, "error": None, "tokens": 0, "cost": 0.0,
                "created_at": now, "updated_at": now, "log_count": 0}).one()
            move_counts(connection, {State.PENDING: 1})
            add_usage(connection, (owner, kind, engine_of(meta), hour_of(now)), sessions_delta=1)
            return to_session(row)

    def get(self, session_id):
        return self._dialect.session(self._read_by_id(self._dialect.by_id, session_id))

    def list_sessions(self, *, state=None, owner=None, kind=None, q=None, limit=50, cursor=None, states=None):
        check.check_limit("limit", limit, 1, 200)
        before = decode_cursor(cursor)
        wanted = wanted_states(state, states)
        if wanted is not None and not wanted:
            return Page([], None)               # state and states that exclude each other
        one = wanted is not None and len(wanted) == 1
        params = {"p_limit": limit + 1, "p_state": next(iter(wanted)).value if one else None,
                  "p_states": sorted(s.value for s in wanted) if wanted and not one else None,
                  "p_owner": owner, "p_kind": kind, "p_q": statements.contains_pattern(q) if q else None, "p_before": before}
        query = statements.list_query(self.name, one, owner is not None, kind is not None,
                                      bool(q), before is not None, several=bool(wanted) and not one)
        with self._tx(write=False) as connection:
            rows = connection.execute(query, {k: v for k, v in params.items() if v is not None}).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([to_session(r) for r in rows], encode_cursor(rows[-1].pk) if more else None)

    def snapshot(self, *, limit_per_state=200):
        check.check_limit("limit", limit_per_state, 1, 1000)
        d = self._dialect
        with self._transactions.cursor(write=False, snapshot=True) as cursor:
            taken_at = self._clock()
            counts = {s.value: 0 for s in State}
            cursor.execute(d.counts)
            counts.update({state: int(n) for state, n in cursor.fetchall()})
            buckets = {}
            for state in State:
                cursor.execute(d.bucket, (state.value, limit_per_state))
                buckets[state.value] = [d.session(row) for row in cursor.fetchall()]
        return Snapshot(taken_at, counts, buckets)

    # -- transitions -----------------------------------------------------------------------------
    def start(self, session_id):
        with self._tx() as connection:
            row = self._fetch(connection, session_id, statements.SELECT_STATE_LOCKED)
            check_move(row.id, State(row.state), "start", State.RUNNING)
            now = self._clock()
            move_counts(connection, {State.PENDING: -1, State.RUNNING: 1})
            return self._write(connection, statements.START, row.pk, state=State.RUNNING.value,
                               started_at=now, heartbeat_at=now, updated_at=now)

    def report_progress(self, session_id, *, progress=None, meta=None, usage=None):
        check.check_object("progress", progress)
        check.check_object("meta", meta)
        tokens, cost = check.check_usage(usage)
        d = self._dialect
        if not (meta or tokens or cost):
            return self._report_progress_only(session_id, progress)
        with self._transactions.cursor() as cursor:
            pk, key, state, stop_requested, stored_progress, stored_meta, owner, kind, total_tokens, \
                total_cost = d.fetch(cursor, d.progress_row, session_id)
            state = State(state)
            check_reportable(key, state, "progress")
            now = self._clock()
            stored_progress, stored_meta = d.load_json(stored_progress), d.load_json(stored_meta)
            if progress:
                stored_progress = merge_progress(stored_progress, progress)
            if meta:
                stored_meta = merge_patch(stored_meta, meta)
            stamp = d.dump_ts(now)
            if tokens or cost:
                check.check_usage_totals(total_tokens + tokens, total_cost + cost)
                engine = engine_of(stored_meta)
                cursor.execute(d.usage_add, (owner, kind, engine, d.dump_ts(hour_of(now)), tokens, cost))
                cursor.execute(d.usage_add_daily, (owner, kind, engine, d.dump_ts(day_start(now)), tokens, cost))
            cursor.execute(d.progress_update, (
                d.dump_json(stored_progress), d.dump_json(stored_meta), total_tokens + tokens,
                total_cost + cost, stamp, stamp, pk))
            return ProgressAck(state, bool(stop_requested))

    def _report_progress_only(self, session_id, progress):
        """Progress alone carries no usage or meta, and the next report supersedes it, so
        it may commit without waiting for PostgreSQL's WAL flush (see ``relaxed_row``).
        SQLite merges a self-contained report in the database in one statement.  Otherwise
        a compare-and-swap: two autocommit statements instead of a locked transaction; a
        concurrent change makes it retry, and after a few losses the locked path below
        settles it."""
        d = self._dialect
        if d.progress_patch is not None:
            patch = self_contained_patch(progress)
            if patch is not None:
                ack = self._patch_progress(session_id, patch)
                if ack is not None:
                    return ack
        for _ in range(3):
            ack = self._swap_progress(session_id, progress)
            if ack is not None:
                return ack
        with self._transactions.cursor(relaxed=True) as cursor:
            pk, key, state, stop_requested, stored = d.fetch(cursor, d.progress_only_row, session_id)
            state = State(state)
            check_reportable(key, state, "progress")
            stamp = d.dump_ts(self._clock())
            stored = d.load_json(stored)
            if progress:
                stored = merge_progress(stored, progress)
            cursor.execute(d.progress_only_update, (d.dump_json(stored), stamp, stamp, pk))
            return ProgressAck(state, bool(stop_requested))

    def _patch_progress(self, session_id, patch):
        """The patch merged by the database in one autocommit UPDATE; None when no running
        session matched, so the path below names the reason (unknown id or wrong state)."""
        d = self._dialect
        stamp = d.dump_ts(self._clock())
        row = self._transactions.write_row(
            d.progress_patch, (d.dump_json(patch), stamp, stamp, check.session_key(session_id)))
        return None if row is None else ProgressAck(State.RUNNING, bool(row[0]))

    def _swap_progress(self, session_id, progress):
        d = self._dialect
        pk, key, state, stored_text = self._read_by_id(d.swap_row, session_id)
        check_reportable(key, State(state), "progress")
        stored = merge_progress(jsontext.loads(stored_text), progress)
        stamp = d.dump_ts(self._clock())
        row = self._transactions.relaxed_row(d.progress_swap, (d.dump_json(stored), stamp, stamp, pk, stored_text))
        return None if row is None else ProgressAck(State.RUNNING, bool(row[0]))

    def request_stop(self, session_id):
        with self._tx() as connection:
            row = self._fetch(connection, session_id, statements.SELECT_STATE_LOCKED)
            current = State(row.state)
            target = stop_target(current)
            check_move(row.id, current, "stop", target)
            now = self._clock()
            if target is current:
                return self._write(connection, statements.RAISE_STOP_FLAG, row.pk, stop_requested=True,
                                   updated_at=now)
            move_counts(connection, {current: -1, target: 1})
            return self._write(connection, statements.CANCEL, row.pk, stop_requested=True, state=target.value,
                               finished_at=now, updated_at=now)

    def finish(self, session_id, state, *, result=None, error=None):
        state = parse_terminal_state(state)
        check.check_object("result", result)
        check.check_error(error)
        with self._tx() as connection:
            row = self._fetch(connection, session_id, statements.SELECT_SESSION_LOCKED)
            current = State(row.state)
            if current is state:
                return to_session(row)          # a retried finish: change nothing
            check_move(row.id, current, "finish", state)
            now = self._clock()
            move_counts(connection, {current: -1, state: 1})
            return self._write(connection, statements.FINISH, row.pk, state=state.value, result=result,
                               error=error, finished_at=now, updated_at=now)
