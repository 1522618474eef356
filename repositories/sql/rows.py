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
LOG_COLUMNS = [logs.c.seq, logs.c.ts, logs.c.level, logs.c.message, logs.c.fields]


def to_session(row) -> Session:
    m = row._mapping
    return Session(
        id=m["id"], kind=m["kind"], label=m["label"], owner=m["owner"], state=State(m["state"]),
        stop_requested=bool(m["stop_requested"]), progress=m["progress"], meta=m["meta"],
        params=m["params"], result=m["result"], error=m["error"],
        usage={"tokens": int(m["tokens"]), "cost": float(m["cost"])},
        created_at=m["created_at"], started_at=m["started_at"], updated_at=m["updated_at"],
        finished_at=m["finished_at"], heartbeat_at=m["heartbeat_at"], log_count=m["log_count"],
        worker_id=m["worker_id"])


def to_log(row) -> LogEntry:
    return LogEntry(row.seq, row.ts, row.level, row.message, row.fields)


def daily_from_hourly(dialect: str) -> str:
    """SQL that fills the daily rollups from the hourly ones (migration 0006, bulk loads).
    SQLite keeps naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"), PostgreSQL timestamptz."""
    day = "date_trunc('day', hour)" if dialect == "postgresql" else "substr(hour, 1, 10) || ' 00:00:00.000000'"
    return (f"INSERT INTO usage_daily (owner, kind, engine, day, sessions, tokens, cost) "
            f"SELECT owner, kind, engine, {day}, sum(sessions), sum(tokens), sum(cost) "
            f"FROM usage_rollups GROUP BY owner, kind, engine, {day}")
