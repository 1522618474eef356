"""Idempotency-Key on every POST (SPEC §4), on every store: a repeat gets the first answer
and changes nothing; a new body under an old key is a 422; refused requests are forgotten;
keys are scoped to the token and the path, and go with their session."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from api_support import error_code


def key(value):
    return {"Idempotency-Key": value}


def twice(caller, path, body=None, *, k="k-1"):
    first = caller.post(path, json=body, headers=key(k))
    again = caller.post(path, json=body, headers=key(k))
    assert again.status_code == first.status_code, (first.json, again.json)
    assert again.get_data() == first.get_data()
    assert again.headers.get("Idempotent-Replayed") == "true"
    return first


def test_every_post_repeated_with_its_key_is_done_once(callers, app):
    worker = callers.worker
    created = twice(worker, "/sessions", {"kind": "external.job", "label": "once"}, k="create")
    assert created.status_code == 201
    session_id = created.json["id"]
    assert twice(worker, f"/sessions/{session_id}/start", {"worker_id": "w-1"}, k="start").status_code == 200
    assert twice(worker, f"/sessions/{session_id}/progress",
                 {"progress": {"current": 1}, "usage": {"tokens": 7, "cost": 0.5}}, k="report").status_code == 200
    logged = twice(worker, f"/sessions/{session_id}/logs", {"entries": [{"level": "info", "message": "one"}]},
                   k="logs")
    assert logged.status_code == 201 and logged.json == {"first_seq": 1, "last_seq": 1}
    assert twice(worker, f"/sessions/{session_id}/stop", k="stop").status_code == 202
    assert twice(worker, f"/sessions/{session_id}/finish", {"state": "stopped"}, k="finish").status_code == 200
    heartbeat = {"worker_id": "w-1", "host": "h", "pid": 7}
    assert twice(worker, "/workers/heartbeat", heartbeat, k="beat").status_code == 200
    session = callers.admin.get(f"/sessions/{session_id}").json
    assert session["usage"] == {"tokens": 7, "cost": 0.5} and session["state"] == "stopped"
    messages = [e["message"] for e in callers.admin.get(f"/sessions/{session_id}/logs").json["entries"]]
    assert messages.count("one") == 1 and sum("stop requested" in m for m in messages) == 1, messages
    snapshot = callers.admin.get("/admin/snapshot").json
    assert sum(snapshot["counts"].values()) == 1


def test_the_same_key_with_another_body_is_a_422(callers):
    first = callers.worker.post("/sessions", json={"kind": "external.job", "label": "a"}, headers=key("k"))
    assert first.status_code == 201
    reused = callers.worker.post("/sessions", json={"kind": "external.job", "label": "b"}, headers=key("k"))
    assert reused.status_code == 422 and error_code(reused) == "idempotency_key_reused"
    assert reused.json["error"]["message"].startswith("Idempotency-Key:")


def test_refused_requests_are_not_remembered(callers):
    refused = callers.worker.post("/sessions", json={"kind": "external.job", "owner": ""}, headers=key("k"))
    assert refused.status_code == 400
    created = callers.worker.post("/sessions", json={"kind": "external.job"}, headers=key("k"))
    assert created.status_code == 201                      # not a 422: the refusal was forgotten
    session_id = created.json["id"]
    early = callers.worker.post(f"/sessions/{session_id}/progress", json={"progress": {}}, headers=key("p"))
    assert early.status_code == 409                        # not running yet
    callers.worker.post(f"/sessions/{session_id}/start")
    late = callers.worker.post(f"/sessions/{session_id}/progress", json={"progress": {}}, headers=key("p"))
    assert late.status_code == 200 and "Idempotent-Replayed" not in late.headers


def test_keys_are_scoped_to_the_token_and_the_path(callers):
    body = {"kind": "external.job"}
    mine = callers.worker.post("/sessions", json=body, headers=key("shared"))
    theirs = callers.admin.post("/sessions", json=body, headers=key("shared"))
    assert mine.status_code == theirs.status_code == 201 and mine.json["id"] != theirs.json["id"]
    other_path = callers.worker.post(f"/sessions/{mine.json['id']}/start", headers=key("shared"))
    assert other_path.status_code == 200 and "Idempotent-Replayed" not in other_path.headers


@pytest.mark.parametrize("value", ["", " ", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_a_400_naming_the_header(callers, value):
    response = callers.worker.post("/sessions", json={"kind": "external.job"}, headers=key(value))
    assert response.status_code == 400 and response.json["error"]["message"].startswith("Idempotency-Key:")
    assert callers.admin.get("/admin/snapshot").json["counts"]["pending"] == 0


def test_a_key_goes_with_its_session(callers, app):
    created = callers.worker.post("/sessions", json={"kind": "external.job"}, headers=key("k"))
    session_id = created.json["id"]
    callers.worker.post(f"/sessions/{session_id}/start")
    callers.worker.post(f"/sessions/{session_id}/finish", json={"state": "completed"})
    assert app.extensions["runboard"].cleanup(timedelta(0)).sessions == 1
    again = callers.worker.post("/sessions", json={"kind": "external.job"}, headers=key("k"))
    assert again.status_code == 201 and again.json["id"] != session_id and "Idempotent-Replayed" not in again.headers


def test_eight_concurrent_repeats_create_one_session(callers, app):
    barrier, answers = threading.Barrier(8), []
    token = callers.worker.token

    def post():
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/sessions", json={"kind": "external.job"},
                               headers={"Authorization": f"Bearer {token}", **key("race")})
        answers.append((response.status_code, response.json))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = {body["id"] for status, body in answers if status == 201}
    assert len(created) == 1
    assert all(status == 201 or (status == 409 and body["error"]["code"] == "idempotency_key_in_flight")
               for status, body in answers), answers
    assert callers.admin.get("/admin/snapshot").json["counts"]["pending"] == 1
