"""RUNBOARD_EXECUTOR=celery end to end: real gunicorn, real Celery workers, the machine's
Redis (with SQLite) and RabbitMQ (with PostgreSQL)."""
from __future__ import annotations

import subprocess
import sys

from celery import Celery

from gunicorn_support import FINISHED, ROOT, Server, wait_for

HOLD = "celery_test.hold"


def started_lines(server, session_id: str) -> list[str]:
    status, page = server.call("GET", f"/api/v1/sessions/{session_id}/logs?limit=5000")
    assert status == 200, page
    return [e["message"] for e in page["entries"] if e["message"].startswith("started by ")]


def publisher(env: dict) -> Celery:
    """A bare Celery app on the deployment's broker: publishes as a second web app would."""
    return Celery("test-publisher", broker=env["RUNBOARD_CELERY_BROKER_URL"], set_as_current=False)


def running_on(server, session_id: str, timeout: float = 30.0) -> dict:
    return server.wait_running(session_id, timeout=timeout)


def test_builtin_kinds_run_on_a_worker_that_records_its_hostname(deployment):
    (worker,) = deployment.only("w1")
    server = deployment.server
    monte = server.submit("monte_carlo", {"iterations": 20000, "seed": 7})
    batch = server.submit("batch", {"phases": ["load", "fit"], "jobs_per_phase": 3, "seed": 1, "job_seconds": 0.0})
    for created in (monte, batch):
        session = server.wait_state(created["id"], FINISHED, timeout=30)
        assert session["state"] == "completed", session
        assert session["worker_id"] == worker.hostname
        assert session["meta"]["runner"]["worker_id"] == worker.hostname
        assert started_lines(server, created["id"]) == [f"started by {worker.hostname}"]
    assert server.session(monte["id"])["result"]["iterations"] == 20000
    status, body = server.call("GET", "/api/v1/workers")
    (row,) = [w for w in body["workers"] if w["worker_id"] == worker.hostname]
    assert row["status"] == "ok" and row["pid"] == worker.process.pid


def test_a_kind_from_runboard_kinds_runs_on_the_worker(deployment):
    deployment.only("w1")
    created = deployment.server.submit(HOLD, {"seconds": 0.2})
    session = deployment.server.wait_state(created["id"], FINISHED, timeout=30)
    assert session["state"] == "completed" and session["result"]["ticks"] > 0, session


def test_stop_reaches_the_job_on_the_worker_through_the_store(deployment):
    deployment.only("w1")
    server = deployment.server
    session_id = server.submit(HOLD, {})["id"]
    running_on(server, session_id)
    status, body = server.call("POST", f"/api/v1/sessions/{session_id}/stop")
    assert status == 202 and body["stop_requested"], body
    session = server.wait_state(session_id, FINISHED, timeout=15)
    assert session["state"] == "stopped" and session["result"]["partial"] is True, session


def test_a_task_published_again_never_starts_its_session_twice(deployment):
    (worker,) = deployment.only("w1")
    server = deployment.server
    session_id = server.submit(HOLD, {"seconds": 1.0})["id"]
    extra = publisher(server.env)
    for _ in range(2):                           # duplicates while it is pending or running
        extra.send_task("runboard.run_session", args=[session_id], task_id=session_id,
                        queue=server.env["RUNBOARD_CELERY_QUEUE"])
    done = server.wait_state(session_id, FINISHED, timeout=30)
    assert done["state"] == "completed", done
    wait_for(lambda: worker.log_text().count(f"{session_id}: already") + worker.log_text().count(
        f"{session_id}: started elsewhere") >= 2, 20, "both duplicates delivered and refused")
    # And once more after it finished: nothing changes, not even updated_at.
    extra.send_task("runboard.run_session", args=[session_id], task_id=session_id,
                    queue=server.env["RUNBOARD_CELERY_QUEUE"])
    wait_for(lambda: worker.log_text().count(f"{session_id}: already completed") >= 1, 20,
             "the late duplicate refused")
    assert server.session(session_id) == done
    assert started_lines(server, session_id) == [f"started by {worker.hostname}"]
    extra.close()


def test_a_killed_worker_s_job_is_failed_by_the_sweep_and_never_restarted(deployment):
    deployment.only("w1", "w2")
    server = deployment.server
    session_id = server.submit(HOLD, {})["id"]
    running = running_on(server, session_id)
    victim = deployment.by_hostname(running["worker_id"])
    survivor = next(w for w in deployment.running.values() if w is not victim)
    victim.kill()
    deployment.forget(victim)
    failed = server.wait_state(session_id, FINISHED, timeout=30)
    assert failed["state"] == "failed" and failed["error"] == "heartbeat lost", failed
    assert failed["started_at"] == running["started_at"]
    if "amqp" in server.env["RUNBOARD_CELERY_BROKER_URL"]:
        # RabbitMQ hands the unacknowledged task to the survivor at once: it must refuse it.
        wait_for(lambda: f"{session_id}: already" in survivor.log_text()
                 or f"{session_id}: started elsewhere" in survivor.log_text(), 30, "the redelivery refused")
    assert server.session(session_id)["state"] == "failed"
    assert started_lines(server, session_id) == [f"started by {victim.hostname}"]


def test_warm_shutdown_finishes_running_jobs_stopped(deployment):
    (worker,) = deployment.only("w3")
    server = deployment.server
    ids = [server.submit(HOLD, {})["id"] for _ in range(2)]   # concurrency 2: both run
    for session_id in ids:
        running_on(server, session_id)
    assert worker.terminate() == 0, worker.log_text()
    deployment.forget(worker)
    for session_id in ids:
        session = server.session(session_id)
        assert session["state"] == "stopped" and session["result"]["partial"] is True, session
        status, page = server.call("GET", f"/api/v1/sessions/{session_id}/logs")
        assert any(e["message"] == f"stop requested by {worker.hostname} (warm shutdown)" for e in page["entries"])


def test_sessions_queued_while_no_worker_runs_survive_the_web_server(deployment, tmp_path):
    deployment.only()                            # no worker at all
    first = deployment.server
    own = ("RUNBOARD_BIND", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY")      # its own port, log, workers
    web = Server(first.url, tmp_path, "web-gone", workers=1, env={k: v for k, v in first.env.items() if k not in own})
    with web.serving():
        ids = [web.submit("monte_carlo", {"iterations": 1000})["id"] for _ in range(3)]
    assert {first.session(i)["state"] for i in ids} == {"pending"}     # that web server is gone
    (worker,) = deployment.only("w4")
    for session_id in ids:
        session = first.wait_state(session_id, FINISHED, timeout=30)
        assert session["state"] == "completed" and session["worker_id"] == worker.hostname, session


def test_a_worker_of_an_app_not_configured_for_celery_says_so(deployment):
    env = {**deployment.env, "RUNBOARD_EXECUTOR": "threads"}
    done = subprocess.run([sys.executable, "-m", "celery", "--app", "wsgi:celery_app", "worker"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "RUNBOARD_EXECUTOR: Celery workers need RUNBOARD_EXECUTOR=celery" in done.stderr
