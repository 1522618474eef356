"""Registered kinds through the API, end to end, on every store: pending → running →
completed / failed / stopped, with the store's state the only state anyone sees."""
from __future__ import annotations

import threading

import pytest

from runner_support import AUTH, finished, runner_of, session_of, wait_for
from job_support import AnyParams, Gate
from repositories.states import State
from webapp.runner import JobFailed, JobKind, Params


def submit(client, kind, params=None, **extra):
    response = client.post("/api/v1/sessions", json={"kind": kind, "params": params or {}, **extra}, headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json


def log_messages(client, session_id):
    return [(e["level"], e["message"]) for e in
            client.get(f"/api/v1/sessions/{session_id}/logs", headers=AUTH).json["entries"]]


def test_a_job_runs_to_completed_with_its_result_progress_and_logs(app):
    def run(context, params):
        for step in range(1, 6):
            context.progress(current=step, total=5, step="counting")
            context.log("info", f"step {step}", n=step)
        return {"answer": 42}

    runner_of(app).kinds.register(JobKind("count", run, AnyParams))
    client = app.test_client()
    created = submit(client, "count", label="input.csv")
    assert created["state"] in ("pending", "running", "completed")
    done = wait_for(lambda: finished(client, created["id"]))
    assert done["state"] == "completed" and done["result"] == {"answer": 42} and done["error"] is None
    assert done["progress"] == {"current": 5, "total": 5, "step": "counting", "percent": 100.0}
    assert done["label"] == "input.csv" and done["started_at"] and done["finished_at"]
    assert done["meta"]["runner"]["pid"] == runner_of(app).identity.pid
    assert done["worker_id"] == runner_of(app).identity.worker_id
    messages = [m for _, m in log_messages(client, created["id"])]
    assert messages[0].startswith("started by ")
    assert messages[1:] == [f"step {n}" for n in range(1, 6)]


def test_the_session_is_running_in_the_store_before_the_jobs_first_line(app):
    seen = {}

    def run(context, params):
        seen["state"] = app.extensions["runboard"].get(context.session_id).state
        return {}

    runner_of(app).kinds.register(JobKind("look", run, AnyParams))
    client = app.test_client()
    created = submit(client, "look")
    wait_for(lambda: finished(client, created["id"]))
    assert seen["state"] is State.RUNNING


def test_a_job_that_raises_fails_with_a_one_line_error_and_its_traceback_in_the_log(app):
    def run(context, params):
        context.log("info", "about to fail")
        raise RuntimeError("disk on fire\nsecond line")

    runner_of(app).kinds.register(JobKind("explode", run, AnyParams))
    client = app.test_client()
    created = submit(client, "explode")
    done = wait_for(lambda: finished(client, created["id"]))
    assert done["state"] == "failed"
    assert done["error"] == "RuntimeError: disk on fire"
    assert "Traceback" not in str(done)
    errors = [m for level, m in log_messages(client, created["id"]) if level == "error"]
    assert len(errors) == 1 and errors[0].startswith("Traceback") and "disk on fire" in errors[0]


def test_job_failed_keeps_the_partial_result(app):
    def run(context, params):
        raise JobFailed("phase two failed", result={"completed": 3})

    runner_of(app).kinds.register(JobKind("partial", run, AnyParams))
    client = app.test_client()
    session_id = submit(client, "partial")["id"]
    done = wait_for(lambda: finished(client, session_id))
    assert (done["state"], done["error"], done["result"]) == ("failed", "phase two failed", {"completed": 3})


def test_a_result_the_store_cannot_keep_fails_the_session_instead_of_leaving_it_running(app):
    runner_of(app).kinds.register(JobKind("nan", lambda context, params: {"x": float("nan")}, AnyParams))
    client = app.test_client()
    session_id = submit(client, "nan")["id"]
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "failed" and "could not be stored" in done["error"]


def test_stop_while_running_ends_stopped_with_the_partial_result_and_records_who(app):
    gate = Gate()
    runner_of(app).kinds.register(gate.kind())
    client = app.test_client()
    created = submit(client, "gated")
    assert gate.entered.wait(10)
    response = client.post(f"/api/v1/sessions/{created['id']}/stop", headers=AUTH)
    assert response.status_code == 202 and response.json["stop_requested"] is True
    done = wait_for(lambda: finished(client, created["id"]))
    assert done["state"] == "stopped" and done["result"] == {"partial": True}
    logs = log_messages(client, created["id"])
    assert ("warning", "stop requested by admin") in logs
    assert logs[-1] == ("info", "stopped: stop requested")


def test_a_stop_made_through_another_process_reaches_the_job_through_the_store(app_factory, store_url):
    if store_url == "memory://":
        pytest.skip("the memory store lives in one process")
    runs_it, other = app_factory(), app_factory()
    gate = Gate()
    runner_of(runs_it).kinds.register(gate.kind())
    runner_of(other).kinds.register(gate.kind())
    created = submit(runs_it.test_client(), "gated")
    assert gate.entered.wait(10)
    # `other` has its own runner, which does not run this job: only the store can tell.
    assert other.test_client().post(f"/api/v1/sessions/{created['id']}/stop", headers=AUTH).status_code == 202
    done = wait_for(lambda: finished(other.test_client(), created["id"]))
    assert done["state"] == "stopped" and done["result"] == {"partial": True}


def test_a_job_that_ignores_stop_is_finalized_after_the_grace_and_its_reports_refused(app_factory):
    app = app_factory(RUNBOARD_STOP_GRACE="1s")
    release, reports = threading.Event(), []

    def stubborn(context, params):
        context.progress(current=1)
        while not release.wait(0.01):
            pass
        context.progress(current=2)
        context.log("info", "still here")
        context.flush()
        reports.append(context.abandoned)
        return {"late": True}

    runner_of(app).kinds.register(JobKind("stubborn", stubborn, AnyParams))
    client = app.test_client()
    created = submit(client, "stubborn")
    wait_for(lambda: session_of(client, created["id"])["state"] == "running")
    client.post(f"/api/v1/sessions/{created['id']}/stop", headers=AUTH)
    done = wait_for(lambda: finished(client, created["id"]), timeout=15)
    assert done["state"] == "stopped" and "did not acknowledge" in done["error"] and done["result"] is None
    release.set()
    wait_for(lambda: reports)
    assert reports == [True]
    after = session_of(client, created["id"])
    assert after == done                   # nothing the job did later was stored
    refused = client.post(f"/api/v1/sessions/{created['id']}/progress", json={"progress": {"current": 3}},
                          headers=AUTH)
    assert refused.status_code == 409


def test_a_bad_param_is_a_400_naming_it_and_stores_nothing(app):
    class Strict(Params):
        iterations: int

    runner_of(app).kinds.register(JobKind("strict", lambda c, p: {}, Strict))
    client = app.test_client()
    before = app.extensions["runboard"].snapshot().counts
    for params, field in (({"iterations": "many"}, "params.iterations"), ({}, "params.iterations"),
                          ({"iterations": 1, "typo": 2}, "params.typo")):
        response = client.post("/api/v1/sessions", json={"kind": "strict", "params": params}, headers=AUTH)
        assert response.status_code == 400 and field in response.json["error"]["message"], response.json
    assert app.extensions["runboard"].snapshot().counts == before


def test_an_unregistered_kind_from_staff_is_an_external_pending_session(app):
    client = app.test_client()
    created = submit(client, "external.job")
    assert created["state"] == "pending"
    assert session_of(client, created["id"])["state"] == "pending"


def test_shutdown_stops_running_jobs_and_finishes_queued_ones(app_factory):
    app = app_factory(RUNBOARD_RUNNER_THREADS="1")
    gate = Gate()
    runner_of(app).kinds.register(gate.kind())
    client = app.test_client()
    running = submit(client, "gated")
    assert gate.entered.wait(10)
    queued = submit(client, "gated")
    assert session_of(client, queued["id"])["state"] == "pending"
    runner_of(app).shutdown(timeout=10)
    first, second = session_of(client, running["id"]), session_of(client, queued["id"])
    assert first["state"] == "stopped" and first["result"] == {"partial": True}
    assert second["state"] == "stopped" and "before the job started" in second["error"]
    assert ("info", "stopped: the server is shutting down") in log_messages(client, running["id"])


def test_a_job_that_ignores_shutdown_is_finished_stopped_when_the_timeout_ends(app):
    release = threading.Event()

    def deaf(context, params):
        context.progress(current=1)
        release.wait(30)
        return {}

    runner_of(app).kinds.register(JobKind("deaf", deaf, AnyParams))
    client = app.test_client()
    created = submit(client, "deaf")
    wait_for(lambda: session_of(client, created["id"])["state"] == "running")
    runner_of(app).shutdown(timeout=0.5)
    done = session_of(client, created["id"])
    release.set()
    assert done["state"] == "stopped" and "shut down before the job acknowledged" in done["error"]


def test_a_submission_after_shutdown_is_stopped_not_left_pending(app):
    runner_of(app).kinds.register(JobKind("late", lambda c, p: {}, AnyParams))
    runner_of(app).shutdown()
    client = app.test_client()
    created = submit(client, "late")
    assert session_of(client, created["id"])["state"] == "stopped"


def test_a_session_slow_to_start_is_not_mistaken_for_one_finalized_elsewhere(app, monkeypatch):
    """The monitor polls every tick; a start that commits later than that must still run."""
    import time as clock

    repository = app.extensions["runboard"]
    real_start = repository.start

    def slow_start(session_id, **options):
        clock.sleep(0.4)                     # longer than the monitor's tick and stop poll
        return real_start(session_id, **options)

    monkeypatch.setattr(repository, "start", slow_start)
    runner_of(app).kinds.register(JobKind("quick", lambda context, params: {"ok": 1}, AnyParams))
    runner_of(app).start()
    client = app.test_client()
    session_id = submit(client, "quick")["id"]
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "completed" and done["result"] == {"ok": 1}


def test_a_job_over_the_log_cap_completes_and_its_log_ends_saying_how_many_were_refused(app_factory):
    app = app_factory(RUNBOARD_MAX_LOG_ENTRIES="10")

    def chatty(context, params):
        for n in range(30):
            context.log("info", f"line {n}")
        return {}

    runner_of(app).kinds.register(JobKind("chatty", chatty, AnyParams))
    client = app.test_client()
    session_id = submit(client, "chatty")["id"]
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "completed"
    logs = log_messages(client, session_id)
    assert logs[0][1].startswith("started by ")
    assert logs[1:9] == [("info", f"line {n}") for n in range(8)]
    assert logs[9:] == [("warning", "22 log entries were not stored: the session's log holds at most 10 entries")]


def test_a_job_created_under_an_idempotency_key_runs_once_its_creation_is_committed(app):
    """The creation commits with its kept answer, after the view returns: the runner is
    handed the job only then (on PostgreSQL it would not find the session before)."""
    def run(context, params):
        context.log("info", "ran")
        return {"ran": True}

    runner_of(app).kinds.register(JobKind("keyed", run, AnyParams))
    client = app.test_client()
    headers = {**AUTH, "Idempotency-Key": "create-keyed-job"}
    first = client.post("/api/v1/sessions", json={"kind": "keyed"}, headers=headers)
    again = client.post("/api/v1/sessions", json={"kind": "keyed"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"] and again.headers["Idempotent-Replayed"] == "true"
    done = wait_for(lambda: finished(client, first.json["id"]))
    assert done["state"] == "completed" and done["result"] == {"ran": True}
    sessions = client.get("/api/v1/sessions?kind=keyed", headers=AUTH).json["items"]
    assert [s["id"] for s in sessions] == [first.json["id"]]
