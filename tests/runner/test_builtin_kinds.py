"""The built-in kinds through the API on every store: monte_carlo and batch run to
completed, failed and stopped, with their results, progress and logs in the store."""
from __future__ import annotations

from runner_support import AUTH, finished, session_of, wait_for


def submit(client, kind, params):
    response = client.post("/api/v1/sessions", json={"kind": kind, "params": params}, headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json["id"]


def messages(client, session_id):
    return [(e["level"], e["message"]) for e in
            client.get(f"/api/v1/sessions/{session_id}/logs?limit=5000", headers=AUTH).json["entries"]]


def test_monte_carlo_completes_with_its_statistics(app):
    client = app.test_client()
    session_id = submit(client, "monte_carlo", {"iterations": 300_000, "seed": 7, "distribution": "uniform",
                                                "low": 0, "high": 10})
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "completed", done
    result = done["result"]
    assert result["iterations"] == 300_000 and 4.9 < result["mean"] < 5.1 and 0 <= result["min"] < result["max"] <= 10
    assert result["p5"] < result["p50"] < result["p95"]
    assert done["progress"]["current"] == done["progress"]["total"] == 300_000
    assert done["progress"]["percent"] == 100.0


def test_monte_carlo_stopped_keeps_the_statistics_of_what_it_drew(app):
    client = app.test_client()
    session_id = submit(client, "monte_carlo", {"iterations": 10**9, "seed": 1})
    wait_for(lambda: session_of(client, session_id)["progress"].get("current"))
    assert client.post(f"/api/v1/sessions/{session_id}/stop", headers=AUTH).status_code == 202
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "stopped"
    assert 0 < done["result"]["iterations"] < 10**9 and done["result"]["mean"] is not None


def test_batch_completes_with_its_counters_and_per_phase_logs(app):
    client = app.test_client()
    session_id = submit(client, "batch", {"phases": ["load", "fit"], "jobs_per_phase": 5, "fail_rate": 0.0,
                                          "job_seconds": 0, "seed": 3})
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "completed"
    assert (done["result"]["total_jobs"], done["result"]["completed_jobs"], done["result"]["failed_jobs"]) == (10, 10, 0)
    assert done["progress"]["completed_jobs"] == 10 and done["progress"]["phase"] == "fit"
    logged = [m for _, m in messages(client, session_id)]
    assert "phase load started" in logged and "phase fit started" in logged


def test_batch_whose_phase_fails_entirely_ends_failed_with_the_counts(app):
    client = app.test_client()
    session_id = submit(client, "batch", {"phases": ["load", "fit"], "jobs_per_phase": 4, "fail_rate": 1.0,
                                          "job_seconds": 0})
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "failed" and "phase load failed" in done["error"]
    assert done["result"]["failed_jobs"] == 4
    assert any(level == "error" for level, _ in messages(client, session_id))


def test_batch_stopped_mid_phase(app):
    client = app.test_client()
    session_id = submit(client, "batch", {"phases": ["a"], "jobs_per_phase": 1000, "job_seconds": 0.05})
    wait_for(lambda: session_of(client, session_id)["progress"].get("current"))
    client.post(f"/api/v1/sessions/{session_id}/stop", headers=AUTH)
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "stopped" and done["result"]["stopped_in_phase"] == "a"
    assert done["result"]["completed_jobs"] < 1000
