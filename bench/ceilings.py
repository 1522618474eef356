"""Raw-driver ceilings measured in the same run as the stores they bound, and the thread
crew that drives both.

A ceiling is the simplest thing the database can do per operation with the store's own
settings, one connection per thread:
* SQLite — ``sqlite3`` with WAL, ``synchronous=NORMAL``, ``busy_timeout``, and
  ``BEGIN IMMEDIATE; <one statement>; COMMIT`` per operation;
* PostgreSQL — psycopg 3, autocommit off, ``<one statement>; commit()`` per operation,
  sessions in UTC like the store's.

The single-row UPDATE rewrites the JSON progress text and two timestamps of a row shaped
like a ``sessions`` row (same columns, similar sizes), cycling through precomputed values
so the figure is the database's, not Python's; the log ceiling inserts 100 rows shaped
like ``log_entries`` (80-byte messages) with one ``executemany`` per commit.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone

import psycopg

BUSY_TIMEOUT_MS = 30_000


# -- the crew -------------------------------------------------------------------------------------
class Crew:
    """``size`` long-lived threads that run one job at a time.

    Threads live across jobs, so per-thread state the stores keep (the SQLite store keeps
    one driver connection per thread) is opened once, in the warm-up, not in every slice.
    """

    def __init__(self, size: int):
        self.size = size
        self._go = threading.Barrier(size + 1)
        self._done = threading.Barrier(size + 1)
        self._job = None
        self._results: list = [None] * size
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True,
                                          name=f"bench-{i}") for i in range(size)]
        for thread in self._threads:
            thread.start()

    def _loop(self, index: int) -> None:
        while True:
            self._go.wait()
            job = self._job
            if job is None:
                return
            try:
                self._results[index] = job(index)
            except BaseException as error:  # reported by run() in the main thread
                self._errors.append(error)
                self._results[index] = 0
            self._done.wait()

    def run(self, job) -> tuple[list, float]:
        """Run ``job(i)`` in every thread at once; return the results and the wall time."""
        self._job, self._errors = job, []
        started = time.perf_counter()
        self._go.wait()
        self._done.wait()
        elapsed = time.perf_counter() - started
        if self._errors:
            raise self._errors[0]
        return list(self._results), elapsed

    def timed(self, steps, seconds: float) -> tuple[int, float]:
        """Call ``steps[i]()`` in thread i until ``seconds`` pass; return (operations, wall time)."""
        deadline = time.perf_counter() + seconds

        def job(index):
            step, done = steps[index], 0
            while time.perf_counter() < deadline:
                step()
                done += 1
            return done

        counts, elapsed = self.run(job)
        return sum(counts), elapsed

    def close(self) -> None:
        self._job = None
        self._go.wait()
        for thread in self._threads:
            thread.join()


def compare(crew: Crew, store_steps, ceiling_steps, seconds: float, rounds: int = 3,
            warmup: float = 0.2) -> tuple[float, float | None]:
    """ops/s of the store and of its ceiling, measured in alternating slices (store, ceiling,
    store, …) so both see the same background load.  ``ceiling_steps`` may be None."""
    crew.timed(store_steps, warmup)
    if ceiling_steps is not None:
        crew.timed(ceiling_steps, warmup)
    totals = {"store": [0, 0.0], "ceiling": [0, 0.0]}
    for _ in range(rounds):
        for name, steps in (("store", store_steps), ("ceiling", ceiling_steps)):
            if steps is None:
                continue
            done, elapsed = crew.timed(steps, seconds / rounds)
            totals[name][0] += done
            totals[name][1] += elapsed
    store = totals["store"][0] / totals["store"][1]
    ceiling = totals["ceiling"][0] / totals["ceiling"][1] if ceiling_steps is not None else None
    return store, ceiling


# -- comparable rows -------------------------------------------------------------------------------
def progress_payload(counter: int) -> str:
    return json.dumps({"current": counter, "total": 1_000_000, "step": "simulate",
                       "percent": round(counter / 10_000, 1)})


#: The ceilings cycle through precomputed values so they measure the database, not the
#: client: every UPDATE still changes the row (SQLite skips the write of an unchanged cell).
PAYLOADS = [progress_payload(i) for i in range(1, 1001)]
_BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
STAMPS = [_BASE.replace(microsecond=i) for i in range(1000)]
SQLITE_STAMPS = [s.replace(tzinfo=None).isoformat(" ", "microseconds") for s in STAMPS]


def _session_like_row(index: int, stamp):
    return (index, str(uuid.uuid4()), "monte_carlo", f"input-{index}.csv", "bench@example.com",
            "running", False, progress_payload(0), json.dumps({"engine": "numpy"}),
            json.dumps({"iterations": 1_000_000, "seed": index}), None, None, 0, 0.0,
            stamp, stamp, stamp, None, stamp, 0)


LOG_MESSAGE = "x" * 80

_COLUMNS = ("pk, id, kind, label, owner, state, stop_requested, progress, meta, params, result, error, "
            "tokens, cost, created_at, started_at, updated_at, finished_at, heartbeat_at, log_count")


# -- SQLite -------------------------------------------------------------------------------------------
class SqliteCeiling:
    """Raw ``sqlite3`` rig in its own database file next to the store's."""

    def __init__(self, path: str, threads: int):
        self.path = path
        setup = sqlite3.connect(path, isolation_level=None)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute(
            "CREATE TABLE IF NOT EXISTS ceiling_sessions (pk INTEGER PRIMARY KEY, id VARCHAR(36) UNIQUE, "
            "kind VARCHAR(64), label VARCHAR(256), owner VARCHAR(256), state VARCHAR(16), "
            "stop_requested BOOLEAN, progress JSON, meta JSON, params JSON, result JSON, error TEXT, "
            "tokens BIGINT, cost FLOAT, created_at DATETIME, started_at DATETIME, updated_at DATETIME, "
            "finished_at DATETIME, heartbeat_at DATETIME, log_count INTEGER)")
        setup.execute("CREATE TABLE IF NOT EXISTS ceiling_logs (session_pk BIGINT, seq INTEGER, "
                      "ts DATETIME, level VARCHAR(8), message TEXT, fields JSON, PRIMARY KEY (session_pk, seq))")
        stamp = _sqlite_now()
        setup.executemany(f"INSERT OR IGNORE INTO ceiling_sessions ({_COLUMNS}) VALUES ({', '.join('?' * 20)})",
                          [_session_like_row(i, stamp) for i in range(threads)])
        setup.close()
        self.connections = [self._connect() for _ in range(threads)]
        self._seq = 0

    def _connect(self):
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=BUSY_TIMEOUT_MS / 1000)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={BUSY_TIMEOUT_MS}"):
            connection.execute(f"PRAGMA {pragma}")
        return connection

    def update_steps(self, shared: bool = False):
        def make(index):
            connection, row, counter = self.connections[index], 0 if shared else index, [index * 125]

            def step():
                counter[0] = k = (counter[0] + 1) % 1000
                stamp = SQLITE_STAMPS[k]
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("UPDATE ceiling_sessions SET progress = ?, heartbeat_at = ?, updated_at = ? "
                                   "WHERE pk = ?", (PAYLOADS[k], stamp, stamp, row))
                connection.execute("COMMIT")
            return step
        return [make(i) for i in range(len(self.connections))]

    def insert_steps(self, batch: int = 100):
        self._seq += 10**9      # a fresh seq range for every call: rows never collide

        def make(index):
            connection, seq = self.connections[index], [self._seq]

            stamp = _sqlite_now()

            def step():
                first = seq[0]
                seq[0] += batch
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany("INSERT INTO ceiling_logs VALUES (?, ?, ?, 'info', ?, '{}')",
                                       [(index, first + i, stamp, LOG_MESSAGE) for i in range(batch)])
                connection.execute("COMMIT")
            return step
        return [make(i) for i in range(len(self.connections))]

    def close(self):
        for connection in self.connections:
            connection.close()


def _sqlite_now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


# -- PostgreSQL ----------------------------------------------------------------------------------------
class PostgresCeiling:
    """Raw psycopg rig in its own scratch database."""

    def __init__(self, dsn: str, threads: int):
        with psycopg.connect(dsn, autocommit=True) as setup:
            setup.execute(
                "CREATE TABLE IF NOT EXISTS ceiling_sessions (pk BIGINT PRIMARY KEY, id VARCHAR(36) UNIQUE, "
                "kind VARCHAR(64), label VARCHAR(256), owner VARCHAR(256), state VARCHAR(16), "
                "stop_requested BOOLEAN, progress JSON, meta JSON, params JSON, result JSON, error TEXT, "
                "tokens BIGINT, cost FLOAT, created_at TIMESTAMPTZ, started_at TIMESTAMPTZ, "
                "updated_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, heartbeat_at TIMESTAMPTZ, log_count INTEGER)")
            setup.execute("CREATE TABLE IF NOT EXISTS ceiling_logs (session_pk BIGINT, seq INTEGER, "
                          "ts TIMESTAMPTZ, level VARCHAR(8), message TEXT, fields JSON, "
                          "PRIMARY KEY (session_pk, seq))")
            stamp = datetime.now(timezone.utc)
            with setup.cursor() as cursor:
                cursor.executemany(f"INSERT INTO ceiling_sessions ({_COLUMNS}) VALUES ({', '.join(['%s'] * 20)}) "
                                   "ON CONFLICT (pk) DO NOTHING",
                                   [_session_like_row(i, stamp) for i in range(threads)])
        self.connections = [psycopg.connect(dsn, options="-c timezone=UTC") for _ in range(threads)]
        self._seq = 0

    def update_steps(self, shared: bool = False):
        def make(index):
            connection, row, counter = self.connections[index], 0 if shared else index, [index * 125]

            def step():
                counter[0] = k = (counter[0] + 1) % 1000
                connection.execute("UPDATE ceiling_sessions SET progress = %s, heartbeat_at = %s, "
                                   "updated_at = %s WHERE pk = %s", (PAYLOADS[k], STAMPS[k], STAMPS[k], row))
                connection.commit()
            return step
        return [make(i) for i in range(len(self.connections))]

    def insert_steps(self, batch: int = 100):
        self._seq += 10**9

        def make(index):
            connection, seq = self.connections[index], [self._seq]

            stamp = datetime.now(timezone.utc)

            def step():
                first = seq[0]
                seq[0] += batch
                with connection.cursor() as cursor:
                    cursor.executemany("INSERT INTO ceiling_logs VALUES (%s, %s, %s, 'info', %s, '{}')",
                                       [(index, first + i, stamp, LOG_MESSAGE) for i in range(batch)])
                connection.commit()
            return step
        return [make(i) for i in range(len(self.connections))]

    def close(self):
        for connection in self.connections:
            connection.close()
