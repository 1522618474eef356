"""Fast bulk loading straight into the store's tables (bypassing the repository).

Loading a million sessions through ``create()`` would measure the loader, not the reads;
these helpers write realistic rows with the driver's bulk path (executemany in chunks of
one transaction each on SQLite, COPY on PostgreSQL) and then set ``state_counts`` to the
true totals, as the store's own transactions would have.

Rows: ``pk`` ascending with ``created_at`` (one second apart unless told), five kinds, 500 owners,
a distinct label each; the newest ``live`` sessions are pending or running, the rest
96 % completed, 2 % failed, 2 % stopped.  Terminal rows carry a result (failed: an error),
live rows no ``finished_at``; pending rows have not started.
``with_usage`` derives the hourly usage rollups the store would have kept for them.
"""
from __future__ import annotations

import json
import random
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

from repositories.sql.rows import daily_from_hourly

COLUMNS = ("pk", "id", "kind", "label", "owner", "state", "stop_requested", "progress", "meta",
           "params", "result", "error", "tokens", "cost", "created_at", "started_at", "updated_at",
           "finished_at", "heartbeat_at", "log_count")
KINDS = ["monte_carlo", "batch", "llm.summary", "etl", "render"]
ENGINES = ["numpy", "torch", "duckdb"]
OWNERS = 500
USAGE_COLUMNS = ("owner", "kind", "engine", "hour", "sessions", "tokens", "cost")
CHUNK = 20_000


def owner_of(index: int) -> str:
    return f"user{index % OWNERS}@example.com"


def _terminal_state(rng: random.Random) -> str:
    roll = rng.random()
    return "completed" if roll < 0.96 else "failed" if roll < 0.98 else "stopped"


def session_rows(first_pk: int, count: int, *, seed: int = 1, finished_before: datetime | None = None,
                 logs_each: int = 0, state: str | None = None, live: int = 300,
                 spacing: timedelta = timedelta(seconds=1)):
    """Yield session tuples in COLUMNS order, oldest first (ascending pk).

    The newest session finishes (or is created, if live) just before ``finished_before``
    (default: one hour ago); sessions are created ``spacing`` apart.  ``state`` forces one
    state for every row; ``live=0`` makes every row terminal.
    """
    rng = random.Random(seed)
    newest = finished_before or datetime.now(timezone.utc) - timedelta(hours=1)
    first_created = newest - spacing * (count + 1)
    progress = json.dumps({"current": 100, "total": 100, "percent": 100.0, "step": "done"})
    live_progress = json.dumps({"current": 40, "total": 100, "percent": 40.0, "step": "simulate"})
    metas = [json.dumps({"engine": engine, "original_filename": "input.csv"}) for engine in ENGINES]
    params = json.dumps({"iterations": 100_000, "seed": 7, "distribution": "normal"})
    for i in range(count):
        pk = first_pk + i
        created = first_created + spacing * i
        if state is not None:
            chosen = state
        elif i >= count - live:
            chosen = rng.choice(("pending", "running"))
        else:
            chosen = _terminal_state(rng)
        terminal = chosen in ("completed", "failed", "stopped")
        started = None if chosen == "pending" else created
        finished = created + timedelta(seconds=1) if terminal else None
        yield (pk, str(uuid.UUID(int=rng.getrandbits(128), version=4)), KINDS[pk % len(KINDS)],
               f"input-{pk}.csv", owner_of(pk), chosen, chosen == "stopped",
               progress if terminal else live_progress, metas[pk % len(ENGINES)], params,
               None if not terminal else '{"mean": 1.0, "std_dev": 0.1}' if chosen != "failed" else None,
               "ValueError: iteration diverged" if chosen == "failed" else None,
               pk % 1000, (pk % 1000) / 1e5, created, started, finished or created, finished,
               started, logs_each)


def log_rows(first_pk: int, count: int, logs_each: int, moment: datetime):
    """``logs_each`` entries (~50-byte messages) for each of ``count`` sessions."""
    for pk in range(first_pk, first_pk + count):
        for seq in range(1, logs_each + 1):
            yield (pk, seq, moment, "info", f"step {seq} of the simulation finished in 12 ms", "{}")


def with_usage(sessions):
    """``(rows, rollups)``: ``rows`` yields the session rows unchanged while summing them
    into hourly usage rollups keyed like the store's (owner, kind, engine, creation hour);
    ``rollups`` yields USAGE_COLUMNS tuples and must be consumed after ``rows`` (the
    loaders below do: sessions first, then logs, then usage)."""
    totals: dict[tuple, list] = {}

    def rows():
        for row in sessions:
            created = row[14]
            key = (row[4], row[2], ENGINES[row[0] % len(ENGINES)],
                   created.replace(minute=0, second=0, microsecond=0))
            total = totals.setdefault(key, [0, 0, 0.0])
            total[0] += 1
            total[1] += row[12]
            total[2] += row[13]
            yield row

    def rollups():
        for key, (count, tokens, cost) in totals.items():
            yield (*key, count, tokens, cost)

    return rows(), rollups()


def _chunks(rows):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sqlite_value(value):
    # The text form the store writes and parses: naive UTC, microseconds.
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def load_sqlite(path: str, sessions, logs=(), usage=()) -> None:
    """executemany in chunks of CHUNK rows per transaction.  No ANALYZE: the store never
    runs it, and its queries pick the same indexes without statistics."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    placeholders = ", ".join("?" * len(COLUMNS))
    for rows, sql in ((sessions, f"INSERT INTO sessions ({', '.join(COLUMNS)}) VALUES ({placeholders})"),
                      (logs, "INSERT INTO log_entries (session_pk, seq, ts, level, message, fields) "
                             "VALUES (?, ?, ?, ?, ?, ?)"),
                      (usage, f"INSERT INTO usage_rollups ({', '.join(USAGE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)")):
        for chunk in _chunks(rows):
            connection.execute("BEGIN")
            connection.executemany(sql, [tuple(_sqlite_value(v) for v in row) for row in chunk])
            connection.execute("COMMIT")
    connection.execute("DELETE FROM usage_daily")
    connection.execute(daily_from_hourly("sqlite"))
    _recount(connection.execute)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def load_postgres(dsn: str, sessions, logs=(), usage=()) -> None:
    """COPY the tables in one transaction, then VACUUM ANALYZE them."""
    with psycopg.connect(dsn) as connection:
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY sessions ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in sessions:
                    copy.write_row(row)
            with cursor.copy("COPY log_entries (session_pk, seq, ts, level, message, fields) FROM STDIN") as copy:
                for row in logs:
                    copy.write_row(row)
            with cursor.copy(f"COPY usage_rollups ({', '.join(USAGE_COLUMNS)}) FROM STDIN") as copy:
                for row in usage:
                    copy.write_row(row)
            cursor.execute("DELETE FROM usage_daily")
            cursor.execute(daily_from_hourly("postgresql"))
            cursor.execute("SELECT setval(pg_get_serial_sequence('sessions', 'pk'), "
                           "(SELECT coalesce(max(pk), 1) FROM sessions))")
            _recount(cursor.execute)
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE sessions")
        connection.execute("VACUUM ANALYZE log_entries")
        connection.execute("VACUUM ANALYZE state_counts")
        connection.execute("VACUUM ANALYZE usage_rollups")
        connection.execute("VACUUM ANALYZE usage_daily")


def _recount(execute) -> None:
    execute("UPDATE state_counts SET sessions = (SELECT count(*) FROM sessions s "
            "WHERE s.state = state_counts.state)")
