"""SQLite writers in several processes: the writer queue across processes against a queue
inside each process only, which leaves the processes to meet in SQLite's busy handler.

    python bench/writers.py                       # 2 processes × 4 threads, 5 rounds of 3 s each way
    python bench/writers.py --processes 2 --threads 16 --rounds 3

Every thread reports progress on a session of its own through ``SqlSessionRepository``
(one write transaction per report, as ``POST …/progress`` makes), on one database file.
Both ways run alternately, round by round, on the same file, so both see the same load.
Printed per way: reports per second (the median round, and the range) and the p50 / p99
latency of one report.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WAYS = ("across processes", "per process only")


def _worker(database: str, way: str, threads: int, start_at: float, seconds: float, ids: list[str]) -> None:
    """One process: ``threads`` reporters from ``start_at`` for ``seconds``; prints JSON."""
    from repositories.sql.store import SqlSessionRepository

    repository = SqlSessionRepository.from_url(f"sqlite:///{database}")
    if way == "per process only":
        repository.transactions._writer = threading.Lock()     # the queue before it spanned processes
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def report(slot: int) -> None:
        session_id, mine, step = ids[slot], latencies[slot], 0
        time.sleep(max(0.0, start_at - time.time()))
        end = start_at + seconds
        while (now := time.perf_counter()) and time.time() < end:
            step += 1
            repository.report_progress(session_id, progress={"current": step, "total": 10**9})
            mine.append(time.perf_counter() - now)

    crew = [threading.Thread(target=report, args=(slot,)) for slot in range(threads)]
    for thread in crew:
        thread.start()
    for thread in crew:
        thread.join()
    repository.close()
    print(json.dumps([value for mine in latencies for value in mine]))


def _round(database: str, way: str, processes: int, threads: int, seconds: float, ids: list[str]):
    start_at = time.time() + 1.0                   # every process imported and connected by then
    children = [subprocess.Popen(
        [sys.executable, __file__, "--child", database, way, str(threads), str(start_at), str(seconds),
         ",".join(ids[index * threads:(index + 1) * threads])], stdout=subprocess.PIPE, text=True)
        for index in range(processes)]
    latencies = [value for child in children for value in json.loads(child.communicate()[0])]
    if any(child.returncode for child in children):
        raise SystemExit("a writer process failed")
    return len(latencies) / seconds, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="per process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    from repositories.sql.store import SqlSessionRepository

    with tempfile.TemporaryDirectory() as folder:
        database = os.path.join(folder, "writers.db")
        repository = SqlSessionRepository.from_url(f"sqlite:///{database}")
        repository.create_schema()
        ids = []
        for _ in range(args.processes * args.threads):
            session = repository.create(kind="bench", owner="bench")
            repository.start(session.id)
            ids.append(session.id)
        repository.close()
        rates: dict[str, list[float]] = {way: [] for way in WAYS}
        latencies: dict[str, list[float]] = {way: [] for way in WAYS}
        for index in range(args.rounds):
            for way in (WAYS if index % 2 == 0 else WAYS[::-1]):
                rate, measured = _round(database, way, args.processes, args.threads, args.seconds, ids)
                rates[way].append(rate)
                latencies[way].extend(measured)
                print(f"round {index + 1}: {way}: {rate:,.0f} reports/s", file=sys.stderr)

    print(f"\nSQLite, {args.processes} processes × {args.threads} threads, {args.rounds} rounds of "
          f"{args.seconds:g} s each way, load average {os.getloadavg()[0]:.1f}\n")
    print("| writer queue | reports/s (median) | range | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for way in WAYS:
        ordered = sorted(latencies[way])
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"| {way} | {statistics.median(rates[way]):,.0f} | {min(rates[way]):,.0f}–{max(rates[way]):,.0f} "
              f"| {statistics.median(ordered) * 1000:.2f} | {p99 * 1000:.1f} |")
    gain = statistics.median(rates[WAYS[0]]) / statistics.median(rates[WAYS[1]]) - 1
    print(f"\nacross processes vs per process only: {gain:+.0%} reports/s (medians)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, database, way, threads, start_at, seconds, ids = sys.argv
        _worker(database, way, int(threads), float(start_at), float(seconds), ids.split(","))
    else:
        main()
