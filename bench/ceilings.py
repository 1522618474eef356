"""Raw-driver ceilings measured in the same run as the stores they bound.

Each is the simplest thing the database can do per operation with the store's own
settings (SQLite: WAL, synchronous=NORMAL, BEGIN IMMEDIATE; PostgreSQL: one commit per
operation), one connection per thread.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import psycopg

PAYLOAD = json.dumps({"current": 1, "total": 100, "percent": 1.0, "step": "simulate"})


def run_threads(threads: int, seconds: float, make_worker) -> float:
    """Run ``make_worker(i)()`` in each thread until the deadline; return total ops/s."""
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    deadline = [0.0]

    def loop(index):
        step = make_worker(index)
        barrier.wait()
        done = 0
        while time.perf_counter() < deadline[0]:
            step()
            done += 1
        counts[index] = done

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def sqlite_update_ceiling(path: str, threads: int, seconds: float) -> float:
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS ceiling (id INTEGER PRIMARY KEY, v TEXT, ts TEXT)")
    setup.executemany("INSERT OR REPLACE INTO ceiling VALUES (?, ?, '')", [(i, PAYLOAD) for i in range(threads)])
    setup.close()

    def worker(index):
        connection = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")

        def step():
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("UPDATE ceiling SET v = ?, ts = ? WHERE id = ?", (PAYLOAD, time.time(), index))
            connection.execute("COMMIT")
        return step

    return run_threads(threads, seconds, worker)


def sqlite_insert_ceiling(path: str, threads: int, seconds: float, batch: int = 100) -> float:
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS ceiling_logs (k INTEGER, seq INTEGER, message TEXT, "
                  "PRIMARY KEY (k, seq))")
    setup.close()

    def worker(index):
        connection = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        seq = [0]

        def step():
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO ceiling_logs VALUES (?, ?, ?)",
                                   [(index, seq[0] + i, "x" * 80) for i in range(batch)])
            connection.execute("COMMIT")
            seq[0] += batch
        return step

    return run_threads(threads, seconds, worker)


def _run_postgres(dsn: str, threads: int, seconds: float, make_step) -> float:
    """Like run_threads, with one psycopg connection per thread, closed afterwards."""
    connections = []

    def worker(index):
        connection = psycopg.connect(dsn)
        connections.append(connection)
        return make_step(connection, index)

    try:
        return run_threads(threads, seconds, worker)
    finally:
        for connection in connections:
            connection.close()


def postgres_update_ceiling(dsn: str, threads: int, seconds: float) -> float:
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS ceiling (id INT PRIMARY KEY, v JSON, ts TIMESTAMPTZ)")
        for i in range(threads):
            setup.execute("INSERT INTO ceiling VALUES (%s, %s, now()) ON CONFLICT (id) DO NOTHING", (i, PAYLOAD))

    def make_step(connection, index):
        def step():
            connection.execute("UPDATE ceiling SET v = %s, ts = now() WHERE id = %s", (PAYLOAD, index))
            connection.commit()
        return step

    return _run_postgres(dsn, threads, seconds, make_step)


def postgres_insert_ceiling(dsn: str, threads: int, seconds: float, batch: int = 100) -> float:
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS ceiling_logs (k INT, seq INT, message TEXT, PRIMARY KEY (k, seq))")
        setup.execute("TRUNCATE ceiling_logs")

    def make_step(connection, index):
        seq = [0]

        def step():
            with connection.cursor() as cursor:
                cursor.executemany("INSERT INTO ceiling_logs VALUES (%s, %s, %s)",
                                   [(index, seq[0] + i, "x" * 80) for i in range(batch)])
            connection.commit()
            seq[0] += batch
        return step

    return _run_postgres(dsn, threads, seconds, make_step)
