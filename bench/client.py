"""Client benchmark: what tracking costs a job, and how fast reports reach the server.

One sitting against one gunicorn (the project's config, SQLite):

* the cost of one buffered ``run.progress()`` and ``run.log()`` call inside a job's loop
  against the same loop doing nothing; target ≤ 5 µs per call (and, without a target, a
  ``log()`` call while the sender thread delivers meanwhile, sharing the job's GIL);
* the CPU the job's process and gunicorn's workers spend per tracked session that reports
  nothing (create, start, finish), without a target;
* the entries per second the client delivers (from the first ``log()`` to the end of the
  final flush) against a plain loop posting 1,000-entry batches with urllib3, the same
  HTTP library; target ≥ 80 %.

    python bench/client.py              # 200,000 calls per figure, 3 rounds, alternately
    python bench/client.py --quick      # 20,000 calls, 1 round
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import urllib3

ROOT = Path(os.environ.get("RUNBOARD_BENCH_ROOT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import free_port  # noqa: E402

import runboard  # noqa: E402

TOKEN = "bench-admin-token-" + uuid.uuid4().hex
BATCH = 1000


class Server:
    """gunicorn -c gunicorn_config.py wsgi:app on a scratch SQLite database."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "RUNBOARD_DATABASE_URL": f"sqlite:///{workdir / 'client-bench.db'}",
               "RUNBOARD_ADMIN_TOKEN": TOKEN, "RUNBOARD_SCHEDULER": "off",
               "RUNBOARD_MAX_LOG_ENTRIES": str(10 ** 8), "RUNBOARD_BIND": f"127.0.0.1:{self.port}",
               "GUNICORN_CMD_ARGS": "--access-logfile /dev/null"}
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "wsgi:app"],
                                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("gunicorn did not come up")
            time.sleep(0.1)

    def cpu(self) -> float:
        """CPU seconds (user and system) gunicorn's workers have used so far."""
        total = 0
        for child in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split():
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def empty_loop(n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        pass
    return time.perf_counter() - started


def calls(run, what: str, n: int) -> float:
    """Seconds for ``n`` calls of ``what`` beyond an empty loop of ``n``."""
    started = time.perf_counter()
    if what == "progress":
        for i in range(n):
            run.progress(current=i, total=n)
    else:
        for i in range(n):
            run.log("info", "a line of output", i=i)
    return time.perf_counter() - started - empty_loop(n)


def buffered_call(client: runboard.Client, what: str, n: int) -> float:
    """µs per call that only buffers: slices of 999 calls (a full batch of 1,000 entries
    would wake the sender), each delivered between slices, untimed."""
    spent, made = 0.0, 0
    with client.track(f"bench.buffered_{what}") as run:
        while made < n:
            spent += calls(run, what, BATCH - 1)
            made += BATCH - 1
            run.flush(timeout=600)
    return spent / made * 1e6


def streaming(client: runboard.Client, n: int) -> tuple[float, float]:
    """(µs per log() call while the sender delivers meanwhile, entries/s delivered from
    the first call to the end of the final flush)."""
    with client.track("bench.streaming") as run:
        started = time.perf_counter()
        spent = calls(run, "log", n)
        run.flush(timeout=600)
        delivered = time.perf_counter() - started
    return spent / n * 1e6, n / delivered


def session_cost(client: runboard.Client, server: "Server", n: int) -> tuple[float, float]:
    """ms of CPU per tracked session that reports nothing (create, start and finish: three
    requests), (in this process — the job's thread and the sender —, in gunicorn's
    workers): what a Celery pool process and the server pay per tracked task."""
    started, serving = time.process_time(), server.cpu()
    for _ in range(n):
        with client.track("bench.session", label="empty"):
            pass
    return (time.process_time() - started) / n * 1000, (server.cpu() - serving) / n * 1000


def plain_loop(url: str, n: int) -> float:
    """Seconds for urllib3 alone (the client's HTTP library) to post ``n`` entries in
    1,000-entry batches to a session."""
    http = urllib3.connection_from_url(url, timeout=60)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def post(path: str, body: dict) -> urllib3.BaseHTTPResponse:
        return http.urlopen("POST", path, body=json.dumps(body), headers=headers)
    session = post("/api/v1/sessions", {"kind": "bench.plain"}).json()["id"]
    post(f"/api/v1/sessions/{session}/start", {})
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        at = datetime.now(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"
        response = post(f"/api/v1/sessions/{session}/logs",
                        {"entries": [{"level": "info", "message": "a line of output", "fields": {"i": i}, "at": at}
                                     for i in range(first, min(first + BATCH, n))]})
        assert response.status == 201, response.data
    elapsed = time.perf_counter() - started
    post(f"/api/v1/sessions/{session}/finish", {"state": "completed"})
    http.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    n = args.calls or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory() as workdir:
        server = Server(Path(workdir))
        try:
            client = runboard.Client(server.url, TOKEN, flush_timeout=600, max_buffered_logs=100_000)
            progress, logs, busy, client_rate, plain_rate, sessions = [], [], [], [], [], []
            for what in ("progress", "log"):   # warm-up, not counted: the first slices of a
                buffered_call(client, what, 10 * BATCH)   # path ran at twice the cost of later ones
            plain_loop(server.url, 10 * BATCH)
            session_cost(client, server, 50)
            for _ in range(rounds):
                sessions.append(session_cost(client, server, n // 200))
                progress.append(buffered_call(client, "progress", n))
                logs.append(buffered_call(client, "log", n))
                cost, rate = streaming(client, n)
                busy.append(cost)
                client_rate.append(rate)
                plain_rate.append(n / plain_loop(server.url, n))
            client.close()
        finally:
            server.stop()
    ratio = [c / p for c, p in zip(client_rate, plain_rate)]
    def figures(values):
        return f"median {statistics.median(values):.2f} (all {', '.join(f'{v:.2f}' for v in values)})"

    def verdict(ok):
        return "PASS" if ok else "FAIL"
    print(f"calls per figure: {n}, rounds: {rounds} (client and plain loop alternately)")
    print(f"progress() µs per buffered call beyond an empty loop: {figures(progress)} — target ≤ 5: "
          f"{verdict(statistics.median(progress) <= 5)}")
    print(f"log() µs per buffered call beyond an empty loop:      {figures(logs)} — target ≤ 5: "
          f"{verdict(statistics.median(logs) <= 5)}")
    print(f"log() µs per call while the sender delivers (no target): {figures(busy)}")
    print(f"CPU ms per tracked session (create, start, finish; no target): the job's process "
          f"{figures([c for c, _ in sessions])}; gunicorn's workers {figures([w for _, w in sessions])}")
    print(f"delivered entries/s: client median {statistics.median(client_rate):,.0f}, "
          f"plain urllib3 loop median {statistics.median(plain_rate):,.0f}")
    print(f"client / plain loop: {', '.join(f'{r:.0%}' for r in ratio)} — target ≥ 80 %: "
          f"{verdict(statistics.median(ratio) >= 0.8)}")

if __name__ == "__main__":
    main()
