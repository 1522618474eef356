"""Fast bulk loading straight into the store's tables (bypassing the repository).

Loading a million sessions through ``create()`` would measure the loader, not the reads;
these helpers write realistic rows with the driver's bulk path (executemany on SQLite,
COPY on PostgreSQL) and then set ``state_counts`` to the true totals, as the store's own
transactions would have.
"""
from __future__ import annotations

import json
import random
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

COLUMNS = ("pk", "id", "kind", "label", "owner", "state", "stop_requested", "progress", "meta",
           "params", "result", "error", "tokens", "cost", "created_at", "started_at", "updated_at",
           "finished_at", "heartbeat_at", "log_count")
KINDS = ["monte_carlo", "batch", "llm.summary", "etl", "render"]
CHUNK = 20_000


def _state_for(index: int, total: int, rng: random.Random) -> str:
    if index >= total - 300:                      # the newest few hundred are live
        return rng.choice(["pending", "running"])
    roll = rng.random()
    return "completed" if roll < 0.96 else "failed" if roll < 0.98 else "stopped"


def session_rows(first_pk: int, count: int, *, seed: int = 1, finished_before: datetime | None = None,
                 logs_each: int = 0, state: str | None = None):
    """Yield session tuples in COLUMNS order, oldest first (ascending pk)."""
    rng = random.Random(seed)
    base = finished_before or datetime.now(timezone.utc) - timedelta(days=1)
    start = base - timedelta(seconds=count)
    progress = json.dumps({"current": 100, "total": 100, "percent": 100.0})
    for i in range(count):
        created = start + timedelta(seconds=i)
        chosen = state or _state_for(i, count, rng)
        terminal = chosen in ("completed", "failed", "stopped")
        yield (first_pk + i, str(uuid.UUID(int=rng.getrandbits(128), version=4)), KINDS[i % len(KINDS)],
               f"input-{i}.csv", f"user{i % 500}@example.com", chosen, False, progress,
               json.dumps({"engine": "numpy"}), "{}", '{"mean": 1.0}' if terminal else None,
               None, 0, 0.0, created, created, created + timedelta(seconds=1),
               created + timedelta(seconds=1) if terminal else None, created, logs_each)


def log_rows(first_pk: int, count: int, logs_each: int, moment: datetime):
    for pk in range(first_pk, first_pk + count):
        for seq in range(1, logs_each + 1):
            yield (pk, seq, moment, "info", f"step {seq} of the simulation finished in 12 ms", "{}")


def _chunks(rows):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sqlite_ts(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def load_sqlite(path: str, sessions, logs=()) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    placeholders = ", ".join("?" * len(COLUMNS))
    for table, rows, sql in (
            ("sessions", sessions, f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES ({placeholders})"),
            ("log_entries", logs, "INSERT INTO log_entries (session_pk, seq, ts, level, message, fields) "
                                  "VALUES (?, ?, ?, ?, ?, ?)")):
        for chunk in _chunks(rows):
            connection.execute("BEGIN")
            connection.executemany(sql, [tuple(_sqlite_ts(v) for v in row) for row in chunk])
            connection.execute("COMMIT")
    _recount(connection.execute, "?")
    connection.execute("ANALYZE")
    connection.close()


def load_postgres(dsn: str, sessions, logs=()) -> None:
    with psycopg.connect(dsn) as connection:
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY sessions ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in sessions:
                    copy.write_row(row)
            with cursor.copy("COPY log_entries (session_pk, seq, ts, level, message, fields) FROM STDIN") as copy:
                for row in logs:
                    copy.write_row(row)
            cursor.execute("SELECT setval(pg_get_serial_sequence('sessions', 'pk'), "
                           "(SELECT coalesce(max(pk), 1) FROM sessions))")
            _recount(cursor.execute, "%s")
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE sessions")
        connection.execute("VACUUM ANALYZE log_entries")


def _recount(execute, _mark: str) -> None:
    execute("UPDATE state_counts SET sessions = 0")
    execute("UPDATE state_counts SET sessions = (SELECT count(*) FROM sessions s "
            "WHERE s.state = state_counts.state)")

