"""Celery benchmark: 1,000 short jobs end to end, four ways, in one sitting.

    python bench/celery.py              # 1,000 jobs per figure, Redis broker, 2 Celery pool processes
    python bench/celery.py --jobs 200   # a quick look

(a) ``threads``: gunicorn (the project's config, 2 workers x 4 threads) runs the kind in its
    own pool; (b) ``celery``: the same gunicorn only queues, ``celery --app wsgi:celery_app
    worker --concurrency 2`` runs the kind; (c) bare Celery tasks doing the same work
    (``bench/celery_work/celery_jobs.py``), untracked, published straight to the broker; (d) the same
    bare tasks tracked with ``runboard.celery.track_tasks`` (each task a session over HTTP).
Throughput: a burst of ``--jobs`` submitted from 8 threads (``POST /api/v1/sessions`` for
a and b, ``apply_async`` for c and d), jobs / (last end - first submission).  Latency: a
paced run of ``--paced`` jobs at ``--rate`` per second, below every figure's capacity (in a
burst, queue->running is only the backlog over the throughput), submission to running: the
store's ``started_at - created_at`` for a and b, publication to the task's first line for
c, publication to its session's ``started_at`` for d.  Targets: (b) >= 50 % of (c),
(d) >= 50 % of (c), p50 queue-to-running < 100 ms.  Everything lives in a scratch
directory, SQLite stores, and queue names of its own on Redis database 15 at
127.0.0.1:6379 (``--broker``).
"""
from __future__ import annotations

import sys
from pathlib import Path

# ``python bench/celery.py`` puts this folder first on the path, where this file would
# shadow Celery itself: take it off before anything imports celery.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime

import httpx
import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: The job module and the bare app; a folder of their own, since on a path holding this file
#: ``import celery`` would find it instead of Celery.
WORK = BENCH / "celery_work"
TOKEN = "bench-celery-admin-token-" + uuid.uuid4().hex
THREADS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Deployment:
    """gunicorn (and, for the celery executor, a worker) on a scratch SQLite database."""

    def __init__(self, workdir: Path, name: str, executor: str, broker: str):
        self.port, self.procs = free_port(), []
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = workdir / f"{name}.db"
        self.queue = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, "RUNBOARD_DATABASE_URL": f"sqlite:///{self.db}", "RUNBOARD_ADMIN_TOKEN": TOKEN,
                    "RUNBOARD_SCHEDULER": "off", "RUNBOARD_BIND": f"127.0.0.1:{self.port}",
                    "GUNICORN_CMD_ARGS": "--access-logfile /dev/null", "RUNBOARD_KINDS": "celery_jobs:KINDS",
                    "PYTHONPATH": str(WORK), "RUNBOARD_EXECUTOR": executor,
                    "RUNBOARD_CELERY_BROKER_URL": broker, "RUNBOARD_CELERY_QUEUE": self.queue}
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=self.env,
                       check=True, capture_output=True)
        self.spawn([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "wsgi:app"])
        wait(lambda: self.answers(), 60, "gunicorn")

    def spawn(self, argv, cwd=ROOT, env=None) -> subprocess.Popen:
        process = subprocess.Popen(argv, cwd=cwd, env=env or self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(process)
        return process

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def worker(self, argv, cwd=ROOT, env=None, hostname="bench") -> None:
        """A Celery worker; ready once it is in the registry (Runboard's) or after its
        first ping answer (a bare app's)."""
        self.spawn([sys.executable, "-m", "celery", *argv, "worker", "--concurrency", "2", "--loglevel", "WARNING",
                    "--hostname", f"{hostname}@%h", "--without-mingle", "--without-gossip"], cwd=cwd, env=env)

    def finished(self) -> list[tuple[str, str, str]]:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT created_at, started_at, finished_at FROM sessions "
                              "WHERE state IN ('completed', 'failed', 'stopped')").fetchall()

    def started_by_label(self) -> dict[str, str]:
        with sqlite3.connect(self.db) as db:
            return dict(db.execute("SELECT label, started_at FROM sessions WHERE started_at IS NOT NULL"))

    def finished_all(self, jobs: int) -> list | None:
        rows = self.finished()
        return rows if len(rows) >= jobs else None

    def stop(self) -> None:
        for process in reversed(self.procs):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.procs:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/celery.py: {what} not ready within {timeout:g} s")
        time.sleep(interval)
    return value


def post_jobs(url: str, jobs: int) -> None:
    def post(n: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            for _ in range(n):
                response = http.post("/api/v1/sessions", json={"kind": "bench.short", "params": {}})
                assert response.status_code == 201, response.text
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(post, [jobs // THREADS + (i < jobs % THREADS) for i in range(THREADS)]))


def paced(submit, jobs: int, rate: float) -> None:
    """Submit ``jobs`` one by one at ``rate`` per second, on a fixed schedule (a late one
    does not push the next back): the offered load stays below what every figure can
    carry, so queue→running is the pipeline's own delay and not the burst's backlog."""
    begin = time.monotonic()
    for n in range(jobs):
        delay = begin + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        submit()


def clear(deployment: Deployment) -> None:
    with sqlite3.connect(deployment.db) as db:
        db.execute("DELETE FROM log_entries")
        db.execute("DELETE FROM sessions")


def runboard_figure(deployment: Deployment, jobs: int, paced_jobs: int, rate: float) -> dict:
    """Throughput of (a) or (b) from a burst, and latency from a paced run, both from the
    store's own timestamps."""
    # Warm-up: a few jobs through every path before the clock starts.
    post_jobs(deployment.url, THREADS)
    wait(lambda: len(deployment.finished()) >= THREADS, 120, "warm-up jobs")
    clear(deployment)
    post_jobs(deployment.url, jobs)
    rows = wait(lambda: deployment.finished_all(jobs), 600, f"{jobs} jobs")
    throughput = jobs / (max(seconds(r[2]) for r in rows) - min(seconds(r[0]) for r in rows))
    clear(deployment)
    with httpx.Client(base_url=deployment.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        paced(lambda: http.post("/api/v1/sessions", json={"kind": "bench.short", "params": {}}).raise_for_status(),
              paced_jobs, rate)
    rows = wait(lambda: deployment.finished_all(paced_jobs), 600, f"{paced_jobs} paced jobs")
    return {"jobs/s": throughput, "latency": sorted(seconds(r[1]) - seconds(r[0]) for r in rows)}


def bare_figure(deployment: Deployment, jobs: int, broker: str, tracked: bool, paced_jobs: int,
                rate: float) -> dict:
    """Throughput of (c) or (d) from a burst: publication to the last task's end (to the
    store's last ``finished_at`` when tracked: the session is the job's end).  Latency from
    a paced run: publication to the task's first line, or, tracked, to its session's
    ``started_at`` (the session is what shows it running)."""
    queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    env = {**deployment.env, "BENCH_BROKER": broker, "BENCH_QUEUE": queue, "BENCH_TRACK": "1" if tracked else "0",
           "RUNBOARD_URL": deployment.url, "RUNBOARD_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join((str(WORK), str(ROOT)))}
    deployment.worker(["-A", "celery_bare"], cwd=WORK, env=env, hostname="bare")
    sys.modules.pop("celery_bare", None)
    os.environ.update({"BENCH_BROKER": broker, "BENCH_QUEUE": queue})
    sys.path[:0] = [str(WORK), str(ROOT)]
    import celery_bare
    times = redis.Redis.from_url(broker)
    key = queue + ":times"

    def publish(n: int = 1) -> None:
        for _ in range(n):
            celery_bare.short_task.apply_async(args=(time.time(),), queue=queue)

    def stamps(count: int) -> list:
        wait(lambda: times.llen(key) >= count, 600, f"{count} bare tasks")
        if tracked:
            wait(lambda: deployment.finished_all(count), 600, f"{count} tracked sessions")
        return [json.loads(t) for t in times.lrange(key, 0, -1)]

    publish(THREADS)                              # warm-up (also waits for the worker)
    stamps(THREADS)
    clear(deployment)
    times.delete(key)
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(publish, [jobs // THREADS + (i < jobs % THREADS) for i in range(THREADS)]))
    burst = stamps(jobs)
    end = max(seconds(r[2]) for r in deployment.finished()) if tracked else max(s[2] for s in burst)
    throughput = jobs / (end - min(s[0] for s in burst))
    clear(deployment)
    times.delete(key)
    paced(publish, paced_jobs, rate)
    runs = stamps(paced_jobs)
    if tracked:
        started = deployment.started_by_label()
        latency = [seconds(started[s[3]]) - s[0] for s in runs]
    else:
        latency = [s[1] - s[0] for s in runs]
    times.delete(key)
    return {"jobs/s": throughput, "latency": sorted(latency)}


def percentile(values: list[float], fraction: float) -> float:
    return values[min(int(len(values) * fraction), len(values) - 1)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--only", default="abcd", help="the figures to run (default abcd; c is the reference)")
    parser.add_argument("--paced", type=int, default=200, help="jobs of the latency run (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="their rate per second (default 20)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"# bench/celery.py at {commit}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{args.jobs} jobs per figure, latency from {args.paced} at {args.rate:g}/s, broker {args.broker}")
    figures = {}
    with tempfile.TemporaryDirectory(prefix="runboard-bench-celery-") as scratch:
        workdir = Path(scratch)
        for name, executor in (("a", "threads"), ("b", "celery"), ("c", "threads"), ("d", "threads")):
            if name not in args.only + "c":
                continue
            deployment = Deployment(workdir, name, executor, args.broker)
            try:
                if name == "b":
                    deployment.worker(["--app", "wsgi:celery_app"])
                if name in "ab":
                    figures[name] = runboard_figure(deployment, args.jobs, args.paced, args.rate)
                else:
                    figures[name] = bare_figure(deployment, args.jobs, args.broker, name == "d", args.paced,
                                                args.rate)
            finally:
                deployment.stop()
    labels = {"a": "(a) threads executor", "b": "(b) celery executor", "c": "(c) bare Celery tasks",
              "d": "(d) bare tasks + track_tasks"}
    bare = figures["c"]["jobs/s"]
    print("| figure | jobs/s (burst) | vs (c) | queue→running p50 ms (paced) | p95 ms | target | result |")
    print("|---|---|---|---|---|---|---|")
    for name, figure in figures.items():
        ratio = figure["jobs/s"] / bare
        p50 = percentile(figure["latency"], 0.5)
        target = {"b": "≥ 50 % of (c), p50 < 100 ms", "d": "≥ 50 % of (c), p50 < 100 ms"}.get(name, "")
        result = ("PASS" if ratio >= 0.5 and p50 < 100 else "FAIL") if target else ""
        print(f"| {labels[name]} | {figure['jobs/s']:,.0f} | {ratio:.0%} | {p50:.1f} | "
              f"{percentile(figure['latency'], 0.95):.1f} | {target} | {result} |")
    print(f"# load at end {os.getloadavg()[0]:.1f}; median latencies in ms: "
          + ", ".join(f"{n} {statistics.median(f['latency']) * 1000:.1f}" for n, f in figures.items()))


if __name__ == "__main__":
    main()
