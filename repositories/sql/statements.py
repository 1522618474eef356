"""Core statements, built once from the table definitions.

Each is compiled once per dialect (``compiled.Plans``), so every statement a store runs
lives here with bind parameters (prefixed ``p_`` because SQLAlchemy reserves column names
in SET clauses): upserts once per dialect, queries with filters once per combination.
"""
from __future__ import annotations

import functools

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .rows import SESSION_COLUMNS, sessions, state_counts, usage_daily, usage_rollups, workers

c = sessions.c

SELECT_SESSION = select(*SESSION_COLUMNS).where(c.id == bindparam("p_id"))
SELECT_SESSION_LOCKED = select(c.pk, *SESSION_COLUMNS).where(c.id == bindparam("p_id")).with_for_update()
SELECT_STATE = select(c.pk, c.id, c.state).where(c.id == bindparam("p_id"))
SELECT_STATE_LOCKED = SELECT_STATE.with_for_update()
INSERT_SESSION = insert(sessions).values({col.key: bindparam(col.key) for col in SESSION_COLUMNS}).returning(
    *SESSION_COLUMNS)
SELECT_COUNTS = select(state_counts.c.state, state_counts.c.sessions)
SELECT_BUCKET = (select(*SESSION_COLUMNS).where(c.state == bindparam("p_state"))
                 .order_by(c.pk.desc()).limit(bindparam("p_limit")))
MOVE_COUNT = (update(state_counts).where(state_counts.c.state == bindparam("p_state"))
              .values(sessions=state_counts.c.sessions + bindparam("p_delta")))

#: What a report needs of its session, locked: it merges in Python (``repositories.merge``,
#: the memory store's code) and writes back in the same transaction.
SELECT_REPORTED = (select(c.pk, c.id, c.state, c.stop_requested, c.progress, c.meta, c.owner, c.kind, c.tokens,
                          c.cost).where(c.id == bindparam("p_id")).with_for_update())
REPORT = (update(sessions).where(c.pk == bindparam("p_pk"))
          .values(progress=bindparam("p_progress"), meta=bindparam("p_meta"), tokens=bindparam("p_tokens"),
                  cost=bindparam("p_cost"), heartbeat_at=bindparam("p_now"), updated_at=bindparam("p_now")))
LOG_SLOT = select(c.pk, c.id, c.state, c.log_count).where(c.id == bindparam("p_id")).with_for_update()
LOGGED = (update(sessions).where(c.pk == bindparam("p_pk"))
          .values(log_count=bindparam("p_log_count"), heartbeat_at=bindparam("p_now"),
                  updated_at=bindparam("p_now")))


def _update(**columns):
    return (update(sessions).where(c.pk == bindparam("p_pk"))
            .values(**{name: bindparam(f"p_{name}") for name in columns}).returning(*SESSION_COLUMNS))


START = _update(state=1, worker_id=1, started_at=1, heartbeat_at=1, updated_at=1)
RAISE_STOP_FLAG = _update(stop_requested=1, updated_at=1)
CANCEL = _update(stop_requested=1, state=1, finished_at=1, updated_at=1)
FINISH = _update(state=1, result=1, error=1, finished_at=1, updated_at=1)


def _usage_upsert(module, table, period: str):
    """Add sessions, tokens and cost to one rollup row, creating it when absent; the row's
    new totals come back, for the cap on totals across sessions."""
    stmt = module.insert(table).values(
        owner=bindparam("p_owner"), kind=bindparam("p_kind"), engine=bindparam("p_engine"),
        **{period: bindparam(f"p_{period}")}, sessions=bindparam("p_sessions"), tokens=bindparam("p_tokens"),
        cost=bindparam("p_cost"))
    return stmt.on_conflict_do_update(
        index_elements=["owner", "kind", "engine", period],
        set_={"sessions": table.c.sessions + stmt.excluded.sessions,
              "tokens": table.c.tokens + stmt.excluded.tokens, "cost": table.c.cost + stmt.excluded.cost},
    ).returning(table.c.tokens, table.c.cost)


def _worker_upsert(module):
    """Insert or update a worker; ``started_at`` is written on insert only."""
    stmt = module.insert(workers).values({name: bindparam(name) for name in workers.c.keys()})
    return stmt.on_conflict_do_update(
        index_elements=["worker_id"],
        set_={k: stmt.excluded[k] for k in ("host", "pid", "active", "rss_bytes", "version", "last_seen")})


_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}
#: Per dialect: (hourly rollup upsert, daily rollup upsert).
ADD_USAGE = {name: (_usage_upsert(m, usage_rollups, "hour"), _usage_upsert(m, usage_daily, "day"))
             for name, m in _DIALECTS.items()}
UPSERT_WORKER = {name: _worker_upsert(m) for name, m in _DIALECTS.items()}


def dialect_insert(dialect: str, table):
    """An INSERT that can say ON CONFLICT, for ``dialect``."""
    return _DIALECTS[dialect].insert(table)


@functools.lru_cache(maxsize=128)
def list_query(dialect: str, state: bool, owner: bool, kind: bool, text: bool, before: bool,
               states: tuple[str, ...] | None = None):
    """The newest-first page query for one combination of filters (``states``: any of several)."""
    query = select(c.pk, *SESSION_COLUMNS).order_by(c.pk.desc()).limit(bindparam("p_limit"))
    if state:
        query = query.where(c.state == bindparam("p_state"))
    if states:
        query = query.where(or_(*(c.state == state for state in states)))
    if owner:
        query = query.where(c.owner == bindparam("p_owner"))
    if kind:
        query = query.where(c.kind == bindparam("p_kind"))
    if text and dialect == "sqlite":
        # the pattern arrives casefolded (see contains_pattern); SQLite's lower() is ASCII-only
        query = query.where(func.runboard_casefold(c.label).like(bindparam("p_q"), escape="\\"))
    elif text:
        query = query.where(c.label.ilike(bindparam("p_q"), escape="\\"))
    if before:
        query = query.where(c.pk < bindparam("p_before"))
    return query


def move_counts(connection, deltas) -> None:
    """Apply per-state counter deltas in sorted state order, so concurrent transactions
    always lock counter rows in the same order and cannot deadlock each other."""
    for state in sorted(deltas, key=lambda s: s.value):
        if deltas[state]:
            connection.execute(MOVE_COUNT, {"p_state": state.value, "p_delta": deltas[state]})


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` literally anywhere (wildcards escaped)."""
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
