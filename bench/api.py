"""API benchmark: gunicorn with the project's own config, driven over keep-alive
connections from a separate process; every figure is also a ratio to GET /healthz
measured in the same run.  A floor (bench/floor_app.py: bare Flask, one statement) is
measured beside it, and the ratio it leaves Runboard is printed as its "cap".

    python bench/api.py                 # SQLite and PostgreSQL, gunicorn's default 2 workers × 4 threads
    python bench/api.py --quick         # 1 s per figure
    python bench/api.py --stores sqlite --concurrency 8
    python bench/api.py --stores sqlite --no-floor --only progress   # progress, keyed progress
    RUNBOARD_BENCH_ROOT=/path/to/other/checkout python bench/api.py   # serve another checkout

State changes (create, start, finish) are measured on sessions loaded for the purpose: every
slice starts or finishes sessions no earlier slice touched.
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

ROOT = Path(os.environ.get("RUNBOARD_BENCH_ROOT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import populate  # noqa: E402

PG_ADMIN = os.environ.get("RUNBOARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "bench-admin-token-" + uuid.uuid4().hex
LAYOUT = {"sqlite": (2, 4), "postgresql": (2, 4)}
#: Pending and running sessions loaded for the start and finish figures; each concurrency
#: takes up to half of them, so the two default concurrencies fit.
POOL = 60_000
#: Running sessions each connection spreads its log batches over, so that no session
#: reaches RUNBOARD_MAX_LOG_ENTRIES within a figure (its 409s would count as errors).
LOG_SESSIONS_PER_CONNECTION = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn -c gunicorn_config.py wsgi:app on a scratch database."""

    def __init__(self, store: str, workdir: Path, sessions: int):
        self.store, self.port, self.database = store, free_port(), None
        if store == "sqlite":
            self.url = f"sqlite:///{workdir / 'api-bench.db'}"
        else:
            self.database = f"runboard_apibench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.database}"')
            self.url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{self.database}".replace("postgresql://", "postgresql+psycopg://")
        workers, threads = LAYOUT[store]
        self.env = {**os.environ, "RUNBOARD_DATABASE_URL": self.url, "RUNBOARD_ADMIN_TOKEN": TOKEN,
                    "RUNBOARD_SCHEDULER": "off", "WEB_CONCURRENCY": str(workers),
                    "GUNICORN_THREADS": str(threads), "RUNBOARD_BIND": f"127.0.0.1:{self.port}",
                    "GUNICORN_CMD_ARGS": "--access-logfile /dev/null"}
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                       env=self.env, check=True, capture_output=True)
        pending = list(populate.session_rows(sessions + 1, POOL, seed=2, state="pending"))
        running = list(populate.session_rows(sessions + POOL + 1, POOL, seed=3, state="running"))
        self.pending, self.running = iter([r[1] for r in pending]), iter([r[1] for r in running])
        rows = itertools.chain(populate.session_rows(1, sessions), pending, running)
        if store == "sqlite":
            populate.load_sqlite(self.url.removeprefix("sqlite:///"), rows)
        else:
            populate.load_postgres(self.url.replace("postgresql+psycopg://", "postgresql://"), rows)
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "wsgi:app"],
                                        cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._wait()

    def _wait(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def call(self, method, path, body=None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            return json.load(response)

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.database:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class FloorServer:
    """bench/floor_app.py under gunicorn with Runboard's worker class, workers and threads,
    on the same scratch database (Runboard's own server stays up, idle, beside it)."""

    def __init__(self, server: Server):
        self.port = free_port()
        workers, threads = LAYOUT[server.store]
        database = (server.url.removeprefix("sqlite:///") if server.store == "sqlite"
                    else server.url.replace("postgresql+psycopg://", "postgresql://"))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(workers), "--threads", str(threads),
             "-b", f"127.0.0.1:{self.port}", "--access-logfile", "/dev/null", "floor_app:app"],
            cwd=Path(__file__).resolve().parent, env={**os.environ, "FLOOR_DATABASE": database},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        Server._wait(self)

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def floor_scenarios(ids: list[str], connections: int) -> dict[str, list[list[bytes]]]:
    build = loadgen.build_request
    return {
        "GET /healthz": [[build("GET", "/healthz")]] * connections,
        "floor: one UPDATE": [[build("POST", f"/floor/{i}/progress")] for i in ids],
        "floor: one SELECT": [[build("GET", f"/floor/{i}")] for i in ids],
    }


class Fresh(list):
    """A scenario whose requests can run once only: one plan per slice."""


def once_each(ids, connections: int, rounds: int, per_connection: int, request) -> Fresh:
    return Fresh([[request(next(ids)) for _ in range(per_connection)] for _ in range(connections)]
                 for _ in range(rounds))


def running_sessions(server: Server, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        session = server.call("POST", "/sessions", {"kind": "bench", "owner": "bench@example.com"})
        server.call("POST", f"/sessions/{session['id']}/start")
        ids.append(session["id"])
    return ids


def scenarios(server: Server, connections: int, rounds: int) -> dict[str, list[list[bytes]]]:
    """Per scenario, the requests each connection cycles through."""
    ids = running_sessions(server, connections)
    logged = running_sessions(server, connections * LOG_SESSIONS_PER_CONNECTION)
    batch = {"entries": [{"level": "info", "message": "step finished in 12 ms; residual 0.00042"}] * 100}
    build = loadgen.build_request
    server.running_ids = ids
    return {
        "GET /healthz": [[build("GET", "/healthz")]] * connections,
        "POST …/progress": [[build("POST", f"/api/v1/sessions/{i}/progress", TOKEN,
                                   {"progress": {"current": n, "total": 1000, "step": "simulate"}})
                             for n in range(50)] for i in ids],
        # A new key on every request (what a retrying client sends), so none is a replay.
        "POST …/progress + Idempotency-Key": Fresh(
            [[build("POST", f"/api/v1/sessions/{i}/progress", TOKEN,
                    {"progress": {"current": n, "total": 1000, "step": "simulate"}},
                    headers={"Idempotency-Key": f"{turn}-{c}-{n}"}) for n in range(KEYED_PER_CONNECTION)]
             for c, i in enumerate(ids)] for turn in range(rounds)),
        "POST …/logs (100)": [[build("POST", f"/api/v1/sessions/{i}/logs", TOKEN, batch)
                               for i in logged[c::connections]] for c in range(connections)],
        "GET /sessions/{id}": [[build("GET", f"/api/v1/sessions/{i}", TOKEN)] for i in ids],
        "GET /admin/snapshot": [[build("GET", "/api/v1/admin/snapshot", TOKEN)]] * connections,
        "POST /sessions": [[build("POST", "/api/v1/sessions", TOKEN,
                                  {"kind": "bench", "owner": "bench@example.com", "label": "input.csv",
                                   "meta": {"engine": "numpy"}})]] * connections,
        "POST …/start": once_each(server.pending, connections, rounds, POOL // (2 * rounds * connections),
                                  lambda i: build("POST", f"/api/v1/sessions/{i}/start", TOKEN)),
        "POST …/finish": once_each(server.running, connections, rounds, POOL // (2 * rounds * connections),
                                   lambda i: build("POST", f"/api/v1/sessions/{i}/finish", TOKEN,
                                                   {"state": "completed", "result": {"mean": 1.0}})),
    }


def chosen(plans: dict, only: str) -> dict:
    """The scenarios ``--only`` names, with those their verdicts compare against."""
    parts = [part.strip() for part in only.split(",") if part.strip()]
    if not parts:
        return plans
    names = {name for name in plans if any(part in name for part in parts)}
    if names & {*STATE_CHANGES, "POST …/progress + Idempotency-Key"}:
        names.add("POST …/progress")
    return {name: plan for name, plan in plans.items() if name == "GET /healthz" or name in names}


def measure(pool, port, plans, seconds, rounds):
    """Each scenario in ``rounds`` slices, every slice right after a /healthz slice, so the
    ratio compares figures taken under the same background load (this machine's neighbours
    vary by tens of percent within a minute).  Returns per scenario its combined figure and
    its ratio to the /healthz slices run beside it."""
    slice_seconds = seconds / rounds
    drive = lambda plan: pool.apply(loadgen.run, ("127.0.0.1", port, plan, slice_seconds))
    drive(plans["GET /healthz"])                                          # warm-up
    results = {}
    for name, plan in plans.items():
        if name == "GET /healthz":
            continue
        base, slices = [], []
        for turn in range(rounds):
            base.append(drive(plans["GET /healthz"]))
            slices.append(drive(plan[turn] if isinstance(plan, Fresh) else plan))
        figure, baseline = loadgen.combine(slices), loadgen.combine(base)
        results[name] = (figure, figure["rps"] / baseline["rps"], baseline)
    every_base = [r[2] for r in results.values()]
    healthz = every_base[0]
    healthz = {**healthz, "rps": sum(b["rps"] for b in every_base) / len(every_base)}
    return {"GET /healthz": (healthz, 1.0, healthz), **results}


def implied_cap(ours: float, bare: float, floor: float) -> float:
    """The best ratio to Runboard's /healthz an endpoint doing at least the floor's statement
    can reach.  Under a saturated CPU, costs per request add up: the statement costs
    1/floor - 1/bare on top of a bare request, so on top of Runboard's /healthz (1/ours) it
    leaves at most (1/ours) / (1/ours + 1/floor - 1/bare)."""
    statement = max(1 / floor - 1 / bare, 0.0)
    return 1 / (1 + ours * statement)


#: Requests per connection and slice of the keyed progress figure (each key is used once).
KEYED_PER_CONNECTION = 1000
#: Keyed progress: share of unkeyed progress req/s in the same run (step 8).
KEYED_SHARE = 0.8
#: Share of /healthz; on PostgreSQL, progress is held to the one-UPDATE floor's cap instead.
TARGETS = {"POST …/progress": 0.65, "GET /sessions/{id}": 0.65}
#: State changes: share of POST …/progress req/s in the same run, and p99 at c = 8.
STATE_CHANGES, STATE_CHANGE_SHARE, STATE_CHANGE_P99_MS = ("POST /sessions", "POST …/start", "POST …/finish"), 0.5, 100
#: PostgreSQL progress at c = 32: at most this many points under the one-UPDATE floor's cap.
FLOOR_POINTS = 0.10


def verdicts(store: str, concurrency: int, name: str, result: dict, ratio: float, results: dict) -> tuple[str, str]:
    """(target, verdict) of one figure."""
    if name in STATE_CHANGES:
        share = result["rps"] / results["POST …/progress"][0]["rps"]
        ok = share >= STATE_CHANGE_SHARE and (concurrency != 8 or result["p99"] < STATE_CHANGE_P99_MS)
        p99 = f", p99 < {STATE_CHANGE_P99_MS} ms" if concurrency == 8 else ""
        return f"≥ {STATE_CHANGE_SHARE:.0%} of progress{p99}", f"{share:.0%} of progress {'PASS' if ok else 'FAIL'}"
    if name == "POST …/progress + Idempotency-Key":
        share = result["rps"] / results["POST …/progress"][0]["rps"]
        return f"≥ {KEYED_SHARE:.0%} of progress", f"{share:.0%} of progress {'PASS' if share >= KEYED_SHARE else 'FAIL'}"
    target = TARGETS.get(name)
    if target is None or (store == "postgresql" and name == "POST …/progress"):
        return "", ""
    return f"≥ {target:.0%}", "PASS" if ratio >= target else "FAIL"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--seconds", type=float, default=6.0, help="per figure, split into --rounds slices")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare Flask + one-statement floor")
    parser.add_argument("--only", default="", help="comma-separated parts of request names to measure "
                        "(with /healthz, and progress where a figure is a share of it)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    rows = []
    # The client has its own process (spawned once), never the server's interpreter.
    with tempfile.TemporaryDirectory(prefix="runboard-apibench-") as workdir, \
            multiprocessing.get_context("spawn").Pool(1) as pool:
        for store in args.stores.split(","):
            server = Server(store, Path(workdir), args.sessions)
            try:
                workers, threads = LAYOUT[store]
                for concurrency in [int(c) for c in args.concurrency.split(",")]:
                    plans = chosen(scenarios(server, concurrency, args.rounds), args.only)
                    results = measure(pool, server.port, plans, args.seconds, args.rounds)
                    for name, (result, ratio, _) in results.items():
                        target, verdict = verdicts(store, concurrency, name, result, ratio, results)
                        rows.append((store, f"{workers}×{threads}", concurrency, name, result, ratio, target, verdict))
                    if not args.no_floor:
                        floor = FloorServer(server)
                        try:
                            floor_results = measure(pool, floor.port, floor_scenarios(server.running_ids, concurrency),
                                                    args.seconds, args.rounds)
                        finally:
                            floor.close()
                        ours = results["GET /healthz"][0]["rps"]
                        bare = floor_results["GET /healthz"][0]["rps"]
                        for name, (result, ratio, _) in floor_results.items():
                            if name != "GET /healthz":
                                cap = implied_cap(ours, bare, result["rps"])
                                verdict = ""
                                if store == "postgresql" and concurrency == 32 and name == "floor: one UPDATE":
                                    progress = results["POST …/progress"][1]
                                    verdict = (f"progress {progress:.0%} vs cap {cap:.0%}: "
                                               + ("PASS" if progress >= cap - FLOOR_POINTS else "FAIL"))
                                rows.append((store, f"{workers}×{threads}", concurrency, name, result, ratio,
                                             f"cap {cap:.0%}", verdict))
                    print(f"{store} c={concurrency} done", flush=True)
            finally:
                server.close()
    print("\n| store | gunicorn | conc. | request | req/s | p50 ms | p99 ms | vs healthz | target | result | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for store, layout, concurrency, name, r, ratio, target, verdict in rows:
        print(f"| {store} | {layout} | {concurrency} | {name} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{ratio:.0%} | {target} | {verdict} | {r['errors']} |")


if __name__ == "__main__":
    main()
