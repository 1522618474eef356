"""The runner inside real gunicorn workers (SPEC §5): a stop reaches the job from any
worker or any server through the store; a killed worker's job is failed by the heartbeat
sweep; SIGTERM finishes running jobs as ``stopped``; bad params never store a session; a
job whose start is slow to commit is still tracked.

Servers are started per test (``gunicorn_support.Server``); every wait is a poll with a
deadline.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from datetime import timedelta

import psycopg
import pytest

from gunicorn_support import FINISHED, Server, flask_cli, wait_for
from repositories.sql import SqlSessionRepository
from repositories.states import RUNNER_LOST

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads worker pids from /proc")

#: Long enough never to finish during a test, sleeping rather than burning CPU; stopped
#: within one 0.05 s step once it sees the flag.
LONG_BATCH = {"phases": ["a", "b"], "jobs_per_phase": 1000, "job_seconds": 0.05, "seed": 1}


@pytest.fixture
def servers(tmp_path):
    """``servers(url, name, workers=…)`` → a started, ready Server; all stopped afterwards.
    Request the database fixture before this one, so servers stop before it is dropped."""
    started = []

    def start(url, name, *, workers, migrate=True, ready=True, **options):
        server = Server(url, tmp_path, name, workers=workers, **options)
        if migrate:
            server.migrate()
        started.append(server.start())
        if ready:
            server.wait_ready()
        return server
    yield start
    with contextlib.ExitStack() as stack:       # signal every server first, then wait for each
        for server in started:
            stack.callback(server.finish_stop)
        for server in started:
            server.begin_stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runboard.db'}"
    return request.getfixturevalue("empty_postgres_url")


def assert_stopped_with_partial_result(session: dict) -> None:
    assert session["state"] == "stopped", session
    result = session["result"]
    assert result["stopped_in_phase"] == "a" and result["total_jobs"] == 2000, result
    assert result["completed_jobs"] < result["total_jobs"]


def stop_lines(server: Server, session_ids) -> dict[str, list[int]]:
    """For each session, the pids of the workers that served its stop requests."""
    served = {session_id: [] for session_id in session_ids}
    for entry in server.access_entries():
        parts = entry["path"].split("/")
        if entry["method"] == "POST" and parts[-1] == "stop" and parts[-2] in served:
            served[parts[-2]].append(int(entry["pid"]))
    return served


def test_a_stop_served_by_another_worker_reaches_the_job_through_the_store(empty_postgres_url, servers):
    """One master, two workers.  A job runs on the worker that accepted its submission, and
    every submission and stop here goes on a fresh connection that a chosen worker accepted
    (``Server.connection_to``), so which stops must travel through the store is decided by
    the test, not left to the kernel's choice of worker."""
    server = servers(empty_postgres_url, "two-workers", workers=2, runner_threads=2)
    first, second = sorted(server.worker_pids())
    # (submitted to, stopped through): two stops only the store can carry, one local.
    plan = [(first, second), (second, first), (first, first)]
    ids = []
    for runs_on, _ in plan:
        running = server.start_job("batch", LONG_BATCH, worker=runs_on)
        assert running["meta"]["runner"]["pid"] == runs_on
        ids.append(running["id"])
    took = {}
    for session_id, (_, stop_through) in zip(ids, plan):
        asked = time.monotonic()
        status, body = server.call_on(stop_through, "POST", f"/api/v1/sessions/{session_id}/stop")
        assert status == 202 and body["stop_requested"] is True, body
        assert_stopped_with_partial_result(server.wait_state(session_id, FINISHED, timeout=10))
        took[session_id] = time.monotonic() - asked
    # gunicorn writes an access line after its response: wait for every stop's.
    served = wait_for(lambda: (s := stop_lines(server, ids)) and all(s.values()) and s, 10,
                      "access log lines for every stop")
    assert [served[i] for i in ids] == [[stop_through] for _, stop_through in plan]
    remote = [i for i, (runs_on, _) in zip(ids, plan) if served[i] != [runs_on]]
    assert len(remote) == 2
    assert server.worker_pids() == {first, second}   # no worker died or was replaced meanwhile
    print("\ntwo workers, stop → stopped: " + ", ".join(
        f"{took[i] * 1000:.0f} ms ({'through the store' if i in remote else 'same worker'})" for i in ids))


def test_a_stop_sent_to_another_server_stops_a_job_running_on_the_first(empty_postgres_url, servers):
    """Two masters on one PostgreSQL database: submitted to A, stopped through B."""
    a = servers(empty_postgres_url, "server-a", workers=1, ready=False)
    b = servers(empty_postgres_url, "server-b", workers=1, migrate=False, ready=False)
    a_workers, b_workers = a.wait_ready(), b.wait_ready()
    running = a.start_job("batch", LONG_BATCH)
    session_id = running["id"]
    assert running["meta"]["runner"]["pid"] in a_workers
    asked = time.monotonic()
    status, body = b.call("POST", f"/api/v1/sessions/{session_id}/stop")
    assert status == 202 and body["stop_requested"] is True, body
    done = b.wait_state(session_id, FINISHED, timeout=10)
    latency = time.monotonic() - asked
    assert_stopped_with_partial_result(done)
    assert [int(e["pid"]) for e in b.access_entries() if e["path"].endswith("/stop")] == list(b_workers)
    assert not any(e["path"].endswith("/stop") for e in a.access_entries())
    _, logs = a.call("GET", f"/api/v1/sessions/{session_id}/logs")
    messages = [e["message"] for e in logs["entries"]]
    assert "stop requested by admin" in messages and messages[-1] == "stopped: stop requested"
    print(f"\nstop through server B → stopped on server A: {latency * 1000:.0f} ms")


def test_a_job_whose_worker_is_killed_stays_running_until_the_heartbeat_sweep_fails_it(store_url, servers):
    server = servers(store_url, "sigkill", workers=1)
    orphan = server.start_job("batch", LONG_BATCH)
    victim, worker = orphan["id"], orphan["meta"]["runner"]["pid"]
    assert server.worker_pids() == {worker}
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: worker not in server.worker_pids(), 10, "the killed worker gone")
    replacement = server.wait_ready()           # respawned, serving, its runner registered
    assert worker not in replacement
    orphan = server.session(victim)
    assert orphan["state"] == "running" and orphan["error"] is None, orphan
    # A job on the new worker heartbeats (every 0.5 s): the sweep must leave it alone.
    survivor = server.start_job("batch", LONG_BATCH)
    assert survivor["meta"]["runner"]["pid"] in replacement
    repository = SqlSessionRepository.from_url(store_url)
    swept = []
    try:
        wait_for(lambda: swept.extend(repository.sweep_heartbeats(timedelta(seconds=2))) or victim in swept,
                 15, "the sweep to fail the killed worker's session", interval=0.1)
    finally:
        repository.close()
    print(f"\nkilled worker's session swept {time.monotonic() - killed_at:.1f} s after SIGKILL")
    assert swept == [victim]
    failed = server.session(victim)
    assert (failed["state"], failed["error"]) == ("failed", "heartbeat lost")
    assert failed["heartbeat_at"] == orphan["heartbeat_at"]   # nobody reported for it after the kill
    assert server.session(survivor["id"])["state"] == "running"


def test_sigterm_to_the_master_finishes_a_running_job_as_stopped(store_url, servers):
    server = servers(store_url, "sigterm", workers=1)
    running = server.start_job("batch", LONG_BATCH)
    session_id, worker = running["id"], running["meta"]["runner"]["pid"]
    asked = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        returncode = server.process.wait(timeout=30)   # gunicorn_config.graceful_timeout
    except subprocess.TimeoutExpired:
        pytest.fail(f"the master did not exit within the graceful timeout:\n{server.log_text()}")
    print(f"\nSIGTERM → master exited in {time.monotonic() - asked:.1f} s")
    assert returncode == 0, server.log_text()
    assert not server.worker_pids() and not os.path.exists(f"/proc/{worker}")
    repository = SqlSessionRepository.from_url(store_url)
    try:
        session = repository.get(session_id)
        messages = [e.message for e in repository.read_logs(session_id).entries]
    finally:
        repository.close()
    assert_stopped_with_partial_result(session.to_dict())
    assert messages[-1] == "stopped: the server is shutting down", messages
    assert "stopped in phase a" in messages


BAD_PARAMS = [
    ("monte_carlo", {"iterations": 0}, "params.iterations: "),
    ("monte_carlo", {}, "params.iterations: is required"),
    ("monte_carlo", {"iterations": 10, "distribution": "uniform", "std": 2.0}, "params.std: "),
    ("monte_carlo", {"iterations": 10, "colour": "red"}, "params.colour: unknown parameter"),
    ("batch", {"fail_rate": 1.5}, "params.fail_rate: "),
    ("batch", {"jobs_per_phase": "10"}, "params.jobs_per_phase: "),
    ("batch", {"phases": ["a", "a"]}, "params.phases: "),
    ("batch", {"retries": 3}, "params.retries: unknown parameter"),
]


def test_bad_params_and_unknown_kinds_are_refused_by_the_real_server_and_store_nothing(tmp_path, servers):
    server = servers(f"sqlite:///{tmp_path / 'params.db'}", "params", workers=1)
    before = server.session_count()
    for kind, params, message in BAD_PARAMS:
        status, body = server.call("POST", "/api/v1/sessions", {"kind": kind, "params": params})
        assert status == 400 and body["error"]["code"] == "validation_error", (kind, params, body)
        assert body["error"]["message"].startswith(message), (kind, params, body)
    user_token = flask_cli(server.env, "tokens", "create", "--role", "user", "--owner", "u@example.com").strip()
    status, body = server.call("POST", "/api/v1/sessions", {"kind": "no_such_kind", "params": {}},
                               token=user_token)
    assert status == 400 and body["error"]["message"].startswith("kind: unknown kind"), body
    assert server.session_count() == before
    # The same user with a registered kind and good params: stored, run and completed.
    done = server.start_job("monte_carlo", {"iterations": 1000, "seed": 7}, token=user_token, finished=True)
    assert done["owner"] == "u@example.com"
    assert done["state"] == "completed" and done["result"]["iterations"] == 1000, done
    assert server.session_count() == before + 1


def test_a_job_whose_start_commits_slowly_still_runs(empty_postgres_url, servers):
    """The monitor must not take a session that is still starting for one finalized
    elsewhere (it used to abandon the job, leaving the session running with no meta, logs
    or heartbeat).  Widen that window: hold the 'running' row of state_counts, which
    start() updates after locking the session, so the start waits inside its transaction
    while monitor passes see the session still pending."""
    server = servers(empty_postgres_url, "slow-start", workers=1)
    (worker,) = server.worker_pids()
    dsn = empty_postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def registered():
        _, body = server.call("GET", "/api/v1/workers")
        return next(w["last_seen"] for w in body["workers"] if w["pid"] == worker)

    with psycopg.connect(dsn) as blocker, psycopg.connect(dsn, autocommit=True) as observer:
        blocker.execute("SELECT sessions FROM state_counts WHERE state = 'running' FOR UPDATE")
        session_id = server.submit("batch", LONG_BATCH)["id"]
        wait_for(lambda: observer.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE NOT l.granted AND a.datname = current_database()").fetchone()[0], 10,
            "the runner's start() waiting on the held row")
        # The monitor registers the worker at the end of each pass: two new registrations
        # mean at least one whole pass ran while the job's session was still starting.
        seen = registered()
        for _ in range(2):
            seen = wait_for(lambda: (now := registered()) > seen and now, 10, "a monitor pass")
        blocker.rollback()
    running = server.wait_running(session_id, timeout=3)
    assert running["meta"]["runner"]["pid"] == worker
    status, _ = server.call("POST", f"/api/v1/sessions/{session_id}/stop")
    assert status == 202
    assert_stopped_with_partial_result(server.wait_state(session_id, FINISHED, timeout=10))


def test_a_session_queued_in_a_killed_worker_is_failed_runner_lost_by_the_sweep(store_url, servers):
    """No stranded session (threads executor): the queue dies with its process, and the
    sweep of the respawned worker fails what it held within two heartbeat timeouts."""
    server = servers(store_url, "queued-sigkill", workers=1, runner_threads=1,
                     env={"RUNBOARD_SCHEDULER": "on", "RUNBOARD_SWEEP_INTERVAL": "1s"})
    running = server.start_job("batch", LONG_BATCH)
    queued = server.submit("batch", LONG_BATCH)["id"]          # the one thread is busy
    assert server.session(queued)["state"] == "pending"
    os.kill(running["meta"]["runner"]["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    lost = server.wait_state(queued, FINISHED, timeout=30)
    assert (lost["state"], lost["error"], lost["started_at"]) == ("failed", RUNNER_LOST, None), lost
    swept = server.wait_state(running["id"], FINISHED, timeout=30)
    assert (swept["state"], swept["error"]) == ("failed", "heartbeat lost"), swept
    print(f"\nqueued session failed {time.monotonic() - killed_at:.1f} s after SIGKILL (timeout 2 s)")
