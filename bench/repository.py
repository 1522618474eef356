"""Repository benchmark: write throughput against raw-driver ceilings measured in the same
run, read latency at a small and a large number of sessions, and retention cleanup.

    python bench/repository.py                  # full run, all stores (~10 min)
    python bench/repository.py --quick          # smoke run, under a minute
    python bench/repository.py --stores sqlite --threads 1 --large 200000

Per store and thread count: report_progress, append_logs (batches of 100) and finish in
ops/s, each beside its ceiling (raw sqlite3 / psycopg doing one single-row UPDATE, or one
100-row insert, per commit, with the store's settings, at the same thread count); then
the latency of snapshot() and of the first list page at --small and --large sessions;
then cleanup() of --cleanup-sessions finished sessions holding --logs-each logs each.
PostgreSQL work happens in scratch databases (runboard_bench_<random>) dropped at the end.
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
import sqlalchemy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ceilings  # noqa: E402
import populate  # noqa: E402
import report  # noqa: E402
from repositories.memory import MemorySessionRepository  # noqa: E402
from repositories.sql import SqlSessionRepository  # noqa: E402
from repositories.states import State  # noqa: E402

PG_ADMIN = os.environ.get("RUNBOARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MEMORY_TARGET = 100_000          # report_progress/s
SHARE = {"sqlite": 0.25, "postgresql": 0.50}   # report_progress ≥ SHARE × raw UPDATE ceiling
LATENCY_TARGET_MS = 20.0         # snapshot and first list page at --large sessions (SQL stores)
LIST_OWNER = populate.owner_of(7)


@dataclass
class Row:
    metric: str
    store: str
    threads: str
    value: str
    ceiling: str = ""
    ratio: str = ""
    target: str = ""
    result: str = ""

    def cells(self):
        return [self.metric, self.store, self.threads, self.value, self.ceiling, self.ratio, self.target,
                self.result]


def throughput_row(metric, store, threads, value, ceiling=None, share=None, absolute=None) -> Row:
    row = Row(metric, store, str(threads), f"{value:,.0f} ops/s")
    if ceiling:
        row.ceiling, row.ratio = f"{ceiling:,.0f} ops/s", f"{value / ceiling:.0%}"
    if share is not None:
        row.target, row.result = f"≥ {share:.0%} of ceiling", "PASS" if value >= share * ceiling else "FAIL"
    if absolute is not None:
        row.target, row.result = f"≥ {absolute:,} ops/s", "PASS" if value >= absolute else "FAIL"
    return row


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
        return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)

    def repo(self, url: str | None = None, **options):
        options.setdefault("max_log_entries", 10**9)     # the benchmark appends for seconds
        if self.kind == "memory":
            repo = MemorySessionRepository(**options)
        else:
            repo = SqlSessionRepository.from_url(url or self.url(), **options)
            repo.create_schema()
        self.repos.append(repo)
        return repo

    def ceiling(self, threads: int):
        if self.kind == "sqlite":
            return ceilings.SqliteCeiling(str(self.workdir / f"ceiling-{uuid.uuid4().hex[:8]}.db"), threads)
        return ceilings.PostgresCeiling(driver_dsn(self.url()), threads)

    def load(self, url: str, sessions, logs=()) -> None:
        if self.kind == "sqlite":
            populate.load_sqlite(sqlite_path(url), sessions, logs)
        else:
            populate.load_postgres(driver_dsn(url), sessions, logs)

    def scalar(self, url: str, sql: str):
        """One value straight from the database, bypassing the store."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(sqlite_path(url))) as connection:
                return connection.execute(sql).fetchone()[0]
        with psycopg.connect(driver_dsn(url)) as connection:
            return connection.execute(sql).fetchone()[0]

    def close(self):
        for repo in self.repos:
            repo.close()
        self.repos = []
        if self.databases:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                for name in self.databases:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.databases = []


def driver_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def new_running(repo, count: int, owner: str = "bench@example.com") -> list[str]:
    return [repo.start(repo.create(kind="monte_carlo", owner=owner, label="input.csv",
                                   meta={"engine": "numpy", "original_filename": "input.csv"},
                                   params={"iterations": 1_000_000, "seed": 7}).id).id
            for _ in range(count)]


LOG_BATCH = [{"level": "info",
              "message": f"iteration {i:>4} finished in 12.4 ms; residual 4.2e-04 below tolerance 1e-03: ok"}
             for i in range(100)]                         # 80-byte messages


# -- writes ----------------------------------------------------------------------------------------
def measure_writes(scratch: Scratch, threads: int, seconds: float, rounds: int, finishes: int) -> list[Row]:
    store = scratch.kind
    repo = scratch.repo()
    crew = ceilings.Crew(threads)
    rig = None if store == "memory" else scratch.ceiling(threads)
    rows: list[Row] = []
    try:
        def progress_steps(session_ids):
            def make(index):
                session_id, counter = session_ids[index], [0]

                def step():
                    counter[0] += 1
                    n = counter[0]
                    repo.report_progress(session_id, progress={"current": n, "total": 1_000_000,
                                                               "step": "simulate"},
                                         meta={"phase": n // 1000} if n % 10 == 0 else None)
                return step
            return [make(i) for i in range(threads)]

        # report_progress, one running session per thread
        own = new_running(repo, threads)
        value, ceiling = ceilings.compare(crew, progress_steps(own), rig and rig.update_steps(), seconds, rounds)
        if store == "memory":
            rows.append(throughput_row("report_progress", store, threads, value, absolute=MEMORY_TARGET))
        else:
            rows.append(throughput_row("report_progress", store, threads, value, ceiling, share=SHARE[store]))
        # report_progress, every thread on the same session (informational)
        if threads > 1:
            shared = new_running(repo, 1) * threads
            value, ceiling = ceilings.compare(crew, progress_steps(shared), rig and rig.update_steps(shared=True),
                                              seconds, rounds)
            rows.append(throughput_row("report_progress, one shared session", store, threads, value, ceiling))
        # append_logs, batches of 100
        logs_to = new_running(repo, threads)
        steps = [(lambda session_id: lambda: repo.append_logs(session_id, LOG_BATCH))(s) for s in logs_to]
        value, ceiling = ceilings.compare(crew, steps, rig and rig.insert_steps(), seconds, rounds)
        rows.append(throughput_row("append_logs ×100", store, threads, value, ceiling))
        # finish: pre-created, started sessions, finished as fast as possible
        per_thread = max(finishes // threads, 10)
        lists, _ = crew.run(lambda i: new_running(repo, per_thread + 10))
        crew.run(lambda i: [repo.finish(s, State.COMPLETED, result={"mean": 0.5}) for s in lists[i][:10]])
        _, elapsed = crew.run(lambda i: [repo.finish(s, State.COMPLETED, result={"mean": 0.5, "std_dev": 0.1})
                                         for s in lists[i][10:]])
        value = per_thread * threads / elapsed
        ceiling = None
        if rig is not None:
            done, spent = crew.timed(rig.update_steps(), max(elapsed, 0.5))
            ceiling = done / spent
        rows.append(throughput_row("finish", store, threads, value, ceiling))
    finally:
        crew.close()
        if rig is not None:
            rig.close()
        scratch.close()
    return rows


# -- reads --------------------------------------------------------------------------------------------
def latency_ms(call, samples: int, budget: float = 10.0) -> tuple[float, float, int]:
    """Median and p95 of up to ``samples`` calls (fewer, but at least 5, if they exceed
    ``budget`` seconds), after three warm-up calls."""
    for _ in range(3):
        call()
    taken: list[float] = []
    stop = time.perf_counter() + budget
    while len(taken) < samples and (len(taken) < 5 or time.perf_counter() < stop):
        started = time.perf_counter()
        call()
        taken.append((time.perf_counter() - started) * 1000)
    taken.sort()
    return statistics.median(taken), taken[max(0, round(len(taken) * 0.95) - 1)], len(taken)


def fill(scratch: Scratch, repo, url: str | None, count: int) -> None:
    rows = populate.session_rows(1, count, seed=count)
    if scratch.kind != "memory":
        scratch.load(url, rows)
        return
    for row in rows:                      # the memory store has no tables: its public API
        kind, label, owner, state = row[2], row[3], row[4], row[5]
        session = repo.create(kind=kind, owner=owner, label=label, meta={"engine": "numpy"},
                              params={"iterations": 100_000})
        if state == "pending":
            continue
        repo.start(session.id)
        if state == "failed":
            repo.finish(session.id, State.FAILED, error="ValueError: iteration diverged")
        elif state != "running":
            repo.finish(session.id, State(state), result={"mean": 1.0, "std_dev": 0.1})


def measure_reads(scratch: Scratch, sizes: list[int], large: int, samples: int) -> list[Row]:
    rows = []
    for size in sizes:
        url = None if scratch.kind == "memory" else scratch.url()
        repo = scratch.repo(url)
        started = time.perf_counter()
        fill(scratch, repo, url, size)
        print(f"  loaded {size:,} sessions in {time.perf_counter() - started:.1f} s", flush=True)
        counts = repo.snapshot(limit_per_state=1).counts
        assert sum(counts.values()) == size, counts
        checks = {
            "snapshot (200 per state)": lambda: repo.snapshot(limit_per_state=200),
            "list page 1 (50)": lambda: repo.list_sessions(limit=50),
            "list page 1 state=running": lambda: repo.list_sessions(state=State.RUNNING, limit=50),
            "list page 1 owner=…": lambda: repo.list_sessions(owner=LIST_OWNER, limit=50),
        }
        for metric, call in checks.items():
            median, p95, n = latency_ms(call, samples)
            row = Row(f"{metric} @ {size:,}", scratch.kind, "1", f"{median:.2f} ms (p95 {p95:.2f}, n={n})")
            if size == large and scratch.kind != "memory":
                row.target = f"< {LATENCY_TARGET_MS:.0f} ms"
                row.result = "PASS" if median < LATENCY_TARGET_MS else "FAIL"
                if median < LATENCY_TARGET_MS <= p95:
                    row.result += " (median; p95 over)"
            rows.append(row)
        scratch.close()
    return rows


# -- cleanup ------------------------------------------------------------------------------------------------
def measure_cleanup(scratch: Scratch, sessions: int, logs_each: int, survivors: int) -> list[Row]:
    """``sessions`` terminal sessions finished 30 days ago with ``logs_each`` logs each, then
    ``survivors`` running sessions (10 logs each) and ``survivors`` finished just now that
    cleanup(older_than=7 days) must leave alone."""
    old = datetime.now(timezone.utc) - timedelta(days=30)
    url = None
    if scratch.kind == "memory":
        moment = [old]
        repo = scratch.repo(clock=lambda: moment[0] or datetime.now(timezone.utc))
        batch = (LOG_BATCH * (logs_each // 100 + 1))[:logs_each]
        states = [row[5] for row in populate.session_rows(1, sessions, live=0)]
        for state in states:
            session_id = repo.start(repo.create(kind="etl", owner="bench@example.com").id).id
            repo.append_logs(session_id, batch)
            repo.finish(session_id, State(state))
        moment[0] = None                                  # from here on the real clock
    else:
        url = scratch.url()
        repo = scratch.repo(url)
        started = time.perf_counter()
        scratch.load(url, populate.session_rows(1, sessions, finished_before=old, logs_each=logs_each, live=0),
                     populate.log_rows(1, sessions, logs_each, old - timedelta(hours=1)))
        print(f"  loaded {sessions:,} sessions / {sessions * logs_each:,} logs in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    live = new_running(repo, survivors)
    for session_id in live:
        repo.append_logs(session_id, LOG_BATCH[:10])
    recent = new_running(repo, survivors)
    for session_id in recent:
        repo.finish(session_id, State.COMPLETED, result={"mean": 1.0})
    planned = repo.cleanup(timedelta(days=7), dry_run=True)
    assert (planned.sessions, planned.log_entries) == (sessions, sessions * logs_each), planned

    # A worker keeps reporting on a live session while the cleanup runs; on SQL stores it
    # has its own engine, as a worker process would.
    reporter = repo if url is None else scratch.repo(url)
    latencies, running = [], threading.Event()
    running.set()

    def report():
        n = 0
        while running.is_set():
            n += 1
            began = time.perf_counter()
            reporter.report_progress(live[0], progress={"current": n, "total": 10**9})
            latencies.append(time.perf_counter() - began)

    thread = threading.Thread(target=report)
    thread.start()
    while not latencies:
        time.sleep(0.001)
    during = len(latencies)
    started = time.perf_counter()
    removed = repo.cleanup(timedelta(days=7))
    elapsed = time.perf_counter() - started
    running.clear()
    thread.join()
    during = sorted(latencies[during:]) or [0.0]
    worst, p99 = during[-1] * 1000, during[min(len(during) - 1, int(len(during) * 0.99))] * 1000

    assert (removed.sessions, removed.log_entries) == (sessions, sessions * logs_each), removed
    assert all(repo.get(s).state is State.RUNNING and repo.get(s).log_count == 10 for s in live)
    assert all(repo.get(s).state is State.COMPLETED for s in recent)
    counts = repo.snapshot(limit_per_state=1).counts
    assert counts["running"] == survivors and counts["completed"] == survivors, counts
    assert sum(counts.values()) == 2 * survivors, counts
    if url is not None:
        assert scratch.scalar(url, "SELECT count(*) FROM log_entries") == 10 * survivors
        assert scratch.scalar(url, "SELECT count(*) FROM sessions") == 2 * survivors
        assert scratch.scalar(url, "SELECT sum(sessions) FROM state_counts") == 2 * survivors
    scratch.close()
    return [Row(f"cleanup {sessions:,} sessions / {sessions * logs_each:,} logs", scratch.kind, "1",
                f"{elapsed:.2f} s", result="verified"),
            Row("report_progress during cleanup: worst / p99", scratch.kind, "1",
                f"{worst:.1f} / {p99:.1f} ms ({len(during):,} reports)", target="worst < 100 ms",
                result="PASS" if worst < 100 else "FAIL")]


# -- report --------------------------------------------------------------------------------------------------
def machine_facts() -> str:
    try:
        with psycopg.connect(PG_ADMIN) as connection:
            pg = connection.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as error:
        pg = f"unreachable ({error.__class__.__name__})"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · "
            f"Python {platform.python_version()} · SQLite {sqlite3.sqlite_version} · PostgreSQL {pg} · "
            f"SQLAlchemy {sqlalchemy.__version__} · psycopg {psycopg.__version__} "
            f"({psycopg.pq.__impl__}) · load average {load}")


def print_table(rows: list[Row]) -> None:
    report.print_table(["metric", "store", "threads", "value", "ceiling", "ratio", "target", "result"], [row.cells() for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="memory,sqlite,postgresql")
    parser.add_argument("--threads", default="1,8", help="thread counts for the write figures")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--cleanup-sessions", type=int, default=100_000)
    parser.add_argument("--logs-each", type=int, default=10, help="log entries per cleaned-up session")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per write figure")
    parser.add_argument("--samples", type=int, default=50, help="calls per latency figure")
    parser.add_argument("--only", default="writes,reads,cleanup", help="parts to run")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: large=50,000, cleanup 5,000 sessions / 50,000 logs, short figures")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - {"memory", "sqlite", "postgresql"}
    if unknown:
        parser.error(f"--stores: unknown {', '.join(sorted(unknown))}")
    threads = [int(t) for t in args.threads.split(",")]
    rounds, survivors = 3, 500
    finishes = {"memory": 50_000, "sqlite": 5_000, "postgresql": 2_000}
    if args.quick:
        args.large, args.cleanup_sessions, args.seconds, args.samples = 50_000, 5_000, 0.6, 20
        rounds, survivors = 2, 50
        finishes = {store: n // 10 for store, n in finishes.items()}
    print(machine_facts(), flush=True)
    print(f"settings: threads {args.threads} · {args.seconds:g} s per write figure in {rounds} slices "
          f"alternating with its ceiling · latency over {args.samples} calls at {args.small:,} and "
          f"{args.large:,} sessions · cleanup {args.cleanup_sessions:,} sessions × {args.logs_each} logs",
          flush=True)
    begun = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="runboard-bench-") as workdir:
        for kind in stores:
            scratch = Scratch(kind, Path(workdir))
            try:
                for count in threads if "writes" in args.only else []:
                    print(f"{kind}: writes with {count} thread(s)", flush=True)
                    rows += measure_writes(scratch, count, args.seconds, rounds, finishes[kind])
                if "reads" in args.only:
                    print(f"{kind}: reads", flush=True)
                    rows += measure_reads(scratch, [args.small, args.large], args.large, args.samples)
                if "cleanup" in args.only:
                    print(f"{kind}: cleanup", flush=True)
                    rows += measure_cleanup(scratch, args.cleanup_sessions, args.logs_each, survivors)
            finally:
                scratch.close()
    print()
    print_table(rows)
    verdicts = [row.result for row in rows if row.target]
    print(f"\n{sum(v.startswith('PASS') for v in verdicts)} of {len(verdicts)} targets pass · "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} · "
          f"total {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
