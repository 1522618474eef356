"""Repository benchmark: write throughput against raw-driver ceilings, read latency at
10,000 and 1,000,000 sessions, and retention cleanup of 100,000 sessions / 1,000,000 logs.

    python bench/repository.py                  # full run, all stores (~10 min)
    python bench/repository.py --quick          # smaller numbers, under a minute or two
    python bench/repository.py --stores sqlite --threads 1

Prints one table; each throughput sits beside its ceiling measured in the same run.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ceilings  # noqa: E402
import populate  # noqa: E402
from repositories.memory import MemorySessionRepository  # noqa: E402
from repositories.sql import SqlSessionRepository  # noqa: E402
from repositories.states import State  # noqa: E402

PG_ADMIN = os.environ.get("RUNBOARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Row:
    metric: str
    store: str
    threads: str
    value: float
    unit: str
    ceiling: float | None = None
    target: str = ""
    passed: bool | None = None

    def cells(self):
        ratio = f"{self.value / self.ceiling:.0%}" if self.ceiling else ""
        verdict = "" if self.passed is None else "PASS" if self.passed else "FAIL"
        ceiling = f"{self.ceiling:,.0f}" if self.ceiling else ""
        value = f"{self.value:,.0f}" if self.unit == "ops/s" else f"{self.value:,.2f}"
        return [self.metric, self.store, self.threads, f"{value} {self.unit}", ceiling, ratio, self.target, verdict]


# -- scratch stores ------------------------------------------------------------------------------
class Scratch:
    """Creates fresh stores of one kind and removes everything it made afterwards."""

    def __init__(self, kind: str, workdir: Path):
        self.kind, self.workdir, self.databases, self.repos = kind, workdir, [], []

    def url(self) -> str:
        name = f"runboard_bench_{uuid.uuid4().hex[:10]}"
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.db')}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+psycopg://")

    def repo(self, url: str | None = None, **options):
        options.setdefault("max_log_entries", 10**9)     # the benchmark appends for seconds
        if self.kind == "memory":
            repo = MemorySessionRepository(**options)
        else:
            repo = SqlSessionRepository.from_url(url or self.url(), **options)
            repo.create_schema()
        self.repos.append(repo)
        return repo

    def close(self):
        for repo in self.repos:
            repo.close()
        if self.databases:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                for name in self.databases:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def driver_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


# -- writes ----------------------------------------------------------------------------------------
def running_sessions(repo, count):
    return [repo.start(repo.create(kind="bench", owner="bench@example.com", meta={"engine": "numpy"}).id).id
            for _ in range(count)]


def measure_writes(scratch: Scratch, threads: int, seconds: float, finish_each: int) -> list[Row]:
    store = scratch.kind
    url = None if store == "memory" else scratch.url()
    repo = scratch.repo(url)
    label = str(threads)
    rows = []

    sessions = running_sessions(repo, threads)

    def progress_worker(index):
        session_id, counter = sessions[index], [0]

        def step():
            counter[0] += 1
            meta = {"phase": counter[0] // 1000} if counter[0] % 10 == 0 else None
            repo.report_progress(session_id, progress={"current": counter[0], "total": 1_000_000,
                                                       "step": "simulate"}, meta=meta)
        return step

    progress = ceilings.run_threads(threads, seconds, progress_worker)
    logs_sessions = running_sessions(repo, threads)
    batch = [{"level": "info", "message": "step finished in 12 ms; residual 0.00042 below tolerance"}] * 100
    appends = ceilings.run_threads(threads, seconds, lambda i: lambda: repo.append_logs(logs_sessions[i], batch))

    to_finish = [running_sessions(repo, finish_each) for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def finisher(ids):
        barrier.wait()
        for session_id in ids:
            repo.finish(session_id, State.COMPLETED, result={"mean": 0.5})

    pool = [threading.Thread(target=finisher, args=(ids,)) for ids in to_finish]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    finishes = threads * finish_each / (time.perf_counter() - started)

    if store == "memory":
        rows.append(Row("report_progress", store, label, progress, "ops/s", None, "≥ 100,000 ops/s",
                        progress >= 100_000 if threads == 1 else None))
        rows.append(Row("append_logs ×100", store, label, appends, "ops/s"))
        rows.append(Row("finish", store, label, finishes, "ops/s"))
        return rows
    if store == "sqlite":
        ceiling_db = str(scratch.workdir / f"ceiling-{uuid.uuid4().hex[:6]}.db")
        update = ceilings.sqlite_update_ceiling(ceiling_db, threads, seconds)
        insert = ceilings.sqlite_insert_ceiling(ceiling_db, threads, seconds)
        share = 0.25
    else:
        dsn = driver_dsn(scratch.url())
        update = ceilings.postgres_update_ceiling(dsn, threads, seconds)
        insert = ceilings.postgres_insert_ceiling(dsn, threads, seconds)
        share = 0.50
    rows.append(Row("report_progress", store, label, progress, "ops/s", update, f"≥ {share:.0%} of ceiling",
                    progress >= share * update))
    rows.append(Row("append_logs ×100", store, label, appends, "ops/s", insert))
    rows.append(Row("finish", store, label, finishes, "ops/s", update))
    return rows


# -- reads --------------------------------------------------------------------------------------------
def latency_ms(call, repeat: int) -> tuple[float, float]:
    call()                                                   # warm caches and statement compilation
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def fill(scratch: Scratch, repo, url: str | None, first_pk: int, count: int) -> None:
    if scratch.kind == "memory":
        for i in range(count):
            session = repo.create(kind=populate.KINDS[i % 5], owner=f"user{i % 500}@example.com",
                                  label=f"input-{i}.csv")
            if i < count - 300:
                repo.start(session.id)
                repo.finish(session.id, State.COMPLETED)
        return
    rows = populate.session_rows(first_pk, count, seed=first_pk)
    if scratch.kind == "sqlite":
        populate.load_sqlite(sqlite_path(url), rows)
    else:
        populate.load_postgres(driver_dsn(url), rows)


def measure_reads(scratch: Scratch, sizes: list[int], repeat: int) -> list[Row]:
    url = None if scratch.kind == "memory" else scratch.url()
    repo = scratch.repo(url)
    rows, loaded = [], 0
    for size in sizes:
        started = time.perf_counter()
        fill(scratch, repo, url, loaded + 1, size - loaded)
        loaded = size
        print(f"  loaded {size:,} sessions into {scratch.kind} in {time.perf_counter() - started:.1f}s",
              flush=True)
        assert sum(repo.snapshot(limit_per_state=1).counts.values()) == size
        checks = {
            "snapshot (200/state)": lambda: repo.snapshot(limit_per_state=200),
            "list page 1": lambda: repo.list_sessions(limit=50),
            "list page 1 state=running": lambda: repo.list_sessions(state=State.RUNNING, limit=50),
            "list page 1 owner=…": lambda: repo.list_sessions(owner="user7@example.com", limit=50),
        }
        for metric, call in checks.items():
            median, p95 = latency_ms(call, repeat)
            big = size >= 1_000_000 and scratch.kind != "memory"
            rows.append(Row(f"{metric} @ {size:,}", scratch.kind, "1", median, "ms median",
                            target="< 20 ms (median)" if big else "", passed=(median < 20) if big else None))
            rows[-1].unit = f"ms median (p95 {p95:.2f})"
    return rows


# -- cleanup ------------------------------------------------------------------------------------------------
def measure_cleanup(scratch: Scratch, sessions: int, logs_each: int) -> list[Row]:
    old = datetime.now(timezone.utc) - timedelta(days=30)
    if scratch.kind == "memory":
        moment = [old]
        repo = scratch.repo(clock=lambda: moment[0])
        batch = [{"level": "info", "message": "step finished"}] * logs_each
        for _ in range(sessions):
            session_id = repo.start(repo.create(kind="bench", owner="bench").id).id
            repo.append_logs(session_id, batch)
            repo.finish(session_id, State.COMPLETED)
        moment[0] = datetime.now(timezone.utc)
        live = running_sessions(repo, 1000)
    else:
        url = scratch.url()
        repo = scratch.repo(url)
        rows = populate.session_rows(1, sessions, finished_before=old, logs_each=logs_each, state="completed")
        logs = populate.log_rows(1, sessions, logs_each, old)
        if scratch.kind == "sqlite":
            populate.load_sqlite(sqlite_path(url), rows, logs)
        else:
            populate.load_postgres(driver_dsn(url), rows, logs)
        live = running_sessions(repo, 1000)
    started = time.perf_counter()
    removed = repo.cleanup(timedelta(days=7))
    elapsed = time.perf_counter() - started
    assert (removed.sessions, removed.log_entries) == (sessions, sessions * logs_each), removed
    assert all(repo.get(session_id).state is State.RUNNING for session_id in live[:50])
    assert sum(repo.snapshot(limit_per_state=1).counts.values()) == len(live)
    return [Row(f"cleanup {sessions:,} sessions / {sessions * logs_each:,} logs", scratch.kind, "1",
                elapsed, "s")]


# -- report --------------------------------------------------------------------------------------------------
def machine_facts() -> str:
    with psycopg.connect(PG_ADMIN) as connection:
        pg = connection.execute("SHOW server_version").fetchone()[0]
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · "
            f"Python {platform.python_version()} · SQLite {sqlite3.sqlite_version} · PostgreSQL {pg}")


def print_table(rows: list[Row]) -> None:
    header = ["metric", "store", "threads", "value", "ceiling ops/s", "ratio", "target", "result"]
    table = [header] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in table[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="memory,sqlite,postgresql")
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--cleanup-sessions", type=int, default=100_000)
    parser.add_argument("--logs-each", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="small numbers for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.large, args.cleanup_sessions, args.seconds = 50_000, 5_000, 1.0
    print(machine_facts(), flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="runboard-bench-") as workdir:
        for kind in args.stores.split(","):
            scratch = Scratch(kind, Path(workdir))
            try:
                for threads in [int(t) for t in args.threads.split(",")]:
                    print(f"{kind}: writes with {threads} thread(s)", flush=True)
                    rows += measure_writes(scratch, threads, args.seconds, 200 if args.quick else 1000)
                print(f"{kind}: reads", flush=True)
                rows += measure_reads(scratch, [args.small, args.large], repeat=30)
                print(f"{kind}: cleanup", flush=True)
                rows += measure_cleanup(scratch, args.cleanup_sessions, args.logs_each)
            finally:
                scratch.close()
    print()
    print_table(rows)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
