"""The tables, and row ↔ record conversion."""
from __future__ import annotations

from ..records import LogEntry, Session
from ..states import State
from .models import (LogRow, SchedulerLeaseRow, SchedulerTickRow, SessionRow, StateCountRow, UsageDailyRow,
                     UsageRollupRow, WorkerRow)

sessions = SessionRow.__table__
logs = LogRow.__table__
state_counts = StateCountRow.__table__
usage_rollups = UsageRollupRow.__table__
usage_daily = UsageDailyRow.__table__
workers = WorkerRow.__table__
leases = SchedulerLeaseRow.__table__
ticks = SchedulerTickRow.__table__

SESSION_COLUMNS = [c for c in sessions.c if c.name != "pk"]
LOG_COLUMNS = [logs.c.seq, logs.c.ts, logs.c.level, logs.c.message, logs.c.fields, logs.c.at]


def to_session(row) -> Session:
    """A Session from a row holding (at least) SESSION_COLUMNS."""
    return Session(
        id=row.id, kind=row.kind, label=row.label, owner=row.owner, state=State(row.state),
        stop_requested=bool(row.stop_requested), progress=row.progress, meta=row.meta,
        params=row.params, result=row.result, error=row.error,
        usage={"tokens": int(row.tokens), "cost": float(row.cost)},
        created_at=row.created_at, started_at=row.started_at, updated_at=row.updated_at,
        finished_at=row.finished_at, heartbeat_at=row.heartbeat_at, log_count=row.log_count,
        worker_id=row.worker_id)


def to_log(row) -> LogEntry:
    return LogEntry(row.seq, row.ts, row.level, row.message, row.fields, row.at)


def daily_from_hourly(dialect: str) -> str:
    """SQL that fills the daily rollups from the hourly ones (migration 0006, bulk loads).
    SQLite keeps naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"), PostgreSQL timestamptz."""
    day = "date_trunc('day', hour)" if dialect == "postgresql" else "substr(hour, 1, 10) || ' 00:00:00.000000'"
    return (f"INSERT INTO usage_daily (owner, kind, engine, day, sessions, tokens, cost) "
            f"SELECT owner, kind, engine, {day}, sum(sessions), sum(tokens), sum(cost) "
            f"FROM usage_rollups GROUP BY owner, kind, engine, {day}")
