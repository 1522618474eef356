"""Runner benchmark: what tracking costs a job, and how fast a stop takes effect.

    python bench/runner.py                  # 10**8 samples × 5 pairs, 10 stops per mode
    python bench/runner.py --quick          # 10**7 samples × 2 pairs, 5 stops per mode
    python bench/runner.py --pairs 5 --stops 20 --iterations 200000000

Tracking overhead: ``monte_carlo`` (normal, fixed seed) called bare — ``run(ctx, params)``
with a context that does nothing — alternating with the same job submitted through the
API of an app on a scratch SQLite file and timed until the store says ``completed``
(polling ``repository.get`` every 5 ms), so both see the same background load; medians
are compared, and every tracked result must equal the bare one.  Stop latency: a 10**9
sample job is stopped once it runs and has reported progress, and the store is polled
every 2 ms until it says ``stopped`` — through the running app (the stop reaches the job
directly) and through a second app on the same file with its own runner (the flag travels
through the store).  The baseline for a stop is one chunk of bare sampling, measured in
the same run: a job can only notice a stop between chunks.  A session the runner marks
``running`` and then lets go of without finishing it is counted as orphaned (target 0) and
its figure is taken again from a fresh submission, so the run still completes.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
from repositories.states import State  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.jobs import monte_carlo  # noqa: E402
from webapp.runner import RUNNER_KEY  # noqa: E402
from webapp.store import EXTENSION_KEY, close_repository  # noqa: E402

TOKEN = "bench-admin-token-" + uuid.uuid4().hex
OVERHEAD_TARGET = 0.03          # tracked / bare − 1, medians
STOP_TARGET_MS = 500.0          # median, request → ``stopped`` stored
FINISH_POLL = 0.005
STOP_POLL = 0.002
SEED = 20261124
LONG_RUN = 10**9
TERMINAL = {State.COMPLETED, State.FAILED, State.STOPPED}
ORPHAN_GRACE = 0.5              # s a session may show ``running`` after the runner let go of it
RETRIES = 3                     # submissions per figure when the runner orphans a session


class Orphaned(RuntimeError):
    """The runner let go of a session it had marked ``running`` without finishing it."""


def retrying(measure):
    """Run ``measure()`` again (up to RETRIES times) when the runner orphans its session;
    the orphans are counted and reported, the figure is taken from a clean run."""
    for attempt in range(RETRIES):
        try:
            return measure()
        except Orphaned as exc:
            print(f"  session {exc} was orphaned by the runner (running in the store, job gone); retrying",
                  flush=True)
    raise RuntimeError(f"the runner orphaned {RETRIES} sessions in a row")


class NullContext:
    """A ``JobContext`` that records nothing: the bare job."""

    def progress(self, **fields) -> None:
        pass

    def log(self, level, message, **fields) -> None:
        pass

    def usage(self, *, tokens=0, cost=0.0) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@dataclass
class Row:
    metric: str
    mode: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    result: str = ""

    def cells(self) -> list[str]:
        return [self.metric, self.mode, self.value, self.baseline, self.ratio, self.target, self.result]


class Deployment:
    """An app (its own runner and store) on a SQLite file, driven through its test client."""

    def __init__(self, url: str, *, create: bool = False):
        self.app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off",
                               "RUNBOARD_ADMIN_TOKEN": TOKEN})
        self.repository = self.app.extensions[EXTENSION_KEY]
        if create:
            self.repository.create_schema()
        self.client = self.app.test_client()
        self.runner = self.app.extensions[RUNNER_KEY]
        self.submitted = 0
        self.orphans: list[str] = []

    def post(self, path: str, body: dict | None = None) -> dict:
        response = self.client.post(f"/api/v1{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        if response.status_code >= 300:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.get_data(as_text=True)[:200]}")
        return response.get_json()

    def submit(self, params: dict) -> str:
        self.submitted += 1
        return self.post("/sessions", {"kind": "monte_carlo", "params": params})["id"]

    def wait(self, session_id: str, done, poll: float, timeout: float = 600.0):
        """Poll the store until ``done(session)``; the session and the time it was seen.
        Raises Orphaned when the session is ``running`` but this runner no longer has it."""
        deadline, orphaned_since = time.monotonic() + timeout, None
        while True:
            session = self.repository.get(session_id)
            if done(session):
                return session, time.perf_counter()
            if session.state is State.RUNNING and session_id not in self.active_ids():
                orphaned_since = orphaned_since or time.monotonic()
                if time.monotonic() - orphaned_since >= ORPHAN_GRACE:
                    self.orphans.append(session_id)
                    raise Orphaned(session_id)
            if time.monotonic() > deadline:
                raise RuntimeError(f"session {session_id} still {session.state.value} after {timeout:g} s")
            time.sleep(poll)

    def active_ids(self) -> set[str]:
        return {context.session_id for context in self.runner.active()}

    def close(self) -> None:
        close_repository(self.app)


def params_for(iterations: int) -> dict:
    return {"iterations": iterations, "seed": SEED, "distribution": "normal", "mean": 0.0, "std": 1.0}


def run_bare(iterations: int) -> tuple[float, dict]:
    params = monte_carlo.MonteCarloParams.model_validate(params_for(iterations))
    started = time.perf_counter()
    result = monte_carlo.run(NullContext(), params)
    return time.perf_counter() - started, result


def run_tracked(deployment: Deployment, iterations: int):
    """Submission → ``completed`` in the store; also the store's own started_at → finished_at."""
    return retrying(lambda: tracked_once(deployment, iterations))


def tracked_once(deployment: Deployment, iterations: int):
    started = time.perf_counter()
    session_id = deployment.submit(params_for(iterations))
    session, seen = deployment.wait(session_id, lambda s: s.state in TERMINAL, FINISH_POLL)
    if session.state is not State.COMPLETED:
        raise RuntimeError(f"tracked run ended {session.state.value}: {session.error}")
    return seen - started, (session.finished_at - session.started_at).total_seconds(), session.result


# -- figures ---------------------------------------------------------------------------------------------
def percent(ratio: float) -> str:
    return f"{ratio - 1:+.1%}"


def measure_overhead(deployment: Deployment, iterations: int, pairs: int) -> tuple[list[Row], float]:
    """Rows, and the bare time of one chunk (the stop figures' baseline)."""
    run_bare(min(iterations, 2 * monte_carlo.CHUNK_SIZE))                 # warm-up: pages, caches
    run_tracked(deployment, min(iterations, 2 * monte_carlo.CHUNK_SIZE))  # and the store's connections
    bare, total, job, results = [], [], [], []
    for pair in range(pairs):
        seconds, reference = run_bare(iterations)
        bare.append(seconds)
        seconds, job_seconds, result = run_tracked(deployment, iterations)
        total.append(seconds)
        job.append(job_seconds)
        results += [reference, result]
        print(f"  pair {pair + 1}/{pairs}: bare {bare[-1]:.3f} s · tracked {total[-1]:.3f} s "
              f"(job {job[-1]:.3f} s)", flush=True)
    base, tracked, inside = (statistics.median(x) for x in (bare, total, job))
    same = all(r == results[0] for r in results)
    spread = lambda xs: f"{min(xs):.3f}–{max(xs):.3f}"
    target = f"≤ +{OVERHEAD_TARGET:.0%}"
    rows = [
        Row("bare run (no-op context)", "—", f"{base:.3f} s (range {spread(bare)}, n={pairs})"),
        Row("submit → completed stored", "runner, SQLite", f"{tracked:.3f} s (range {spread(total)}, n={pairs})",
            f"{base:.3f} s", percent(tracked / base), target,
            "PASS" if tracked <= (1 + OVERHEAD_TARGET) * base else "FAIL"),
        Row("job time (started_at → finished_at)", "runner, SQLite",
            f"{inside:.3f} s (range {spread(job)}, n={pairs})", f"{base:.3f} s", percent(inside / base)),
        Row("submit → completed stored, fastest of each", "runner, SQLite", f"{min(total):.3f} s",
            f"{min(bare):.3f} s", percent(min(total) / min(bare))),
        Row("same seed → same statistics", "bare vs tracked", "identical" if same else "DIFFERENT",
            target="identical", result="PASS" if same else "FAIL"),
    ]
    chunks = -(-iterations // monte_carlo.CHUNK_SIZE)
    return rows, base / chunks


def measure_stops(running: Deployment, stopper: Deployment, count: int) -> tuple[list[float], bool]:
    """Milliseconds from the stop request to ``stopped`` stored; whether every stopped
    session kept a partial result."""
    latencies, partial = [], True
    for _ in range(count):
        latency, session = retrying(lambda: stop_once(running, stopper))
        latencies.append(latency)
        result = session.result or {}
        partial = partial and session.error is None and 0 < result.get("iterations", 0) < LONG_RUN
    return latencies, partial


def stop_once(running: Deployment, stopper: Deployment):
    session_id = running.submit(params_for(LONG_RUN))
    running.wait(session_id, lambda s: s.state is State.RUNNING and s.progress.get("current"), STOP_POLL)
    started = time.perf_counter()
    stopper.post(f"/sessions/{session_id}/stop")
    session, seen = running.wait(session_id, lambda s: s.state in TERMINAL, STOP_POLL, timeout=60)
    if session.state is not State.STOPPED:
        raise RuntimeError(f"stopped run ended {session.state.value}: {session.error}")
    return (seen - started) * 1000, session


def stop_row(mode: str, latencies: list[float], chunk_ms: float) -> Row:
    middle = statistics.median(latencies)
    return Row("stop request → stopped stored", mode,
               f"{middle:.0f} ms (max {max(latencies):.0f}, n={len(latencies)})", f"{chunk_ms:.0f} ms (1 chunk)",
               f"{middle / chunk_ms:.1f}×", f"median < {STOP_TARGET_MS:.0f} ms",
               "PASS" if middle < STOP_TARGET_MS else "FAIL")


def poll_cost_us(deployment: Deployment, session_id: str, calls: int = 200) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        deployment.repository.get(session_id)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


# -- report ----------------------------------------------------------------------------------------------
def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_facts() -> str:
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · "
            f"Python {platform.python_version()} · NumPy {np.__version__} · SQLite {sqlite3.sqlite_version} · "
            f"load average {load_average()}")


def print_table(rows: list[Row]) -> None:
    report.print_table(["metric", "mode", "value", "baseline", "ratio", "target", "result"], [row.cells() for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10**8, help="samples per overhead run")
    parser.add_argument("--pairs", type=int, default=5, help="bare/tracked pairs, alternating (≥ 3)")
    parser.add_argument("--stops", type=int, default=10, help="stops per mode")
    parser.add_argument("--quick", action="store_true", help="10**7 samples, 2 pairs, 5 stops")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.pairs, args.stops = 10**7, 2, 5
    if not 1 <= args.iterations <= LONG_RUN or args.pairs < 1 or args.stops < 1:
        parser.error("--iterations must be 1…10**9, --pairs and --stops at least 1")
    print(machine_facts(), flush=True)
    print(f"settings: monte_carlo normal, seed {SEED}, {args.iterations:,} samples × {args.pairs} pairs "
          f"(bare, tracked, …) · {args.stops} stops per mode of a {LONG_RUN:,}-sample run · "
          f"chunks of {monte_carlo.CHUNK_SIZE:,} · polls every {FINISH_POLL * 1000:g} ms (finish), "
          f"{STOP_POLL * 1000:g} ms (stop)", flush=True)
    begun = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="runboard-runnerbench-")
    running = stopper = None
    try:
        url = f"sqlite:///{Path(workdir) / 'runner-bench.db'}"
        running = Deployment(url, create=True)
        stopper = Deployment(url)
        print("tracking overhead", flush=True)
        rows, chunk_seconds = measure_overhead(running, args.iterations, args.pairs)
        print("stop latency", flush=True)
        local, local_partial = measure_stops(running, running, args.stops)
        remote, remote_partial = measure_stops(running, stopper, args.stops)
        rows += [stop_row("in-process (notify_stop)", local, chunk_seconds * 1000),
                 stop_row("cross-process (via the store)", remote, chunk_seconds * 1000),
                 Row("stopped sessions keep their partial result", "both", f"{2 * args.stops} sessions",
                     target="all", result="PASS" if local_partial and remote_partial else "FAIL"),
                 Row("sessions orphaned (running stored, job gone)", "runner, SQLite",
                     f"{len(running.orphans)} of {running.submitted}", target="0",
                     result="PASS" if not running.orphans else "FAIL")]
        some_session = running.repository.list_sessions(limit=1).items[0].id
        poll_us = poll_cost_us(running, some_session)
    finally:
        for deployment in (stopper, running):
            if deployment is not None:
                deployment.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"one poll (repository.get) takes {poll_us:.0f} µs: {poll_us / (FINISH_POLL * 1e6):.1%} of a core "
          f"at {FINISH_POLL * 1000:g} ms, {poll_us / (STOP_POLL * 1e6):.1%} at {STOP_POLL * 1000:g} ms")
    print()
    print_table(rows)
    verdicts = [row.result for row in rows if row.target]
    print(f"\n{sum(v == 'PASS' for v in verdicts)} of {len(verdicts)} targets pass · "
          f"load average {load_average()} · total {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
