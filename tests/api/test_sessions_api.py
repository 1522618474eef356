"""Every row of SPEC §4, with its error codes, through the HTTP interface."""
from __future__ import annotations

import io
import uuid

import pytest

from api_support import USER_KIND, error_code


@pytest.fixture
def admin(callers):
    return callers.admin


def new_session(caller, **body):
    response = caller.post("/sessions", {"kind": "external.job", "owner": "alice@example.com", **body})
    assert response.status_code == 201, response.json
    return response.json


def running(caller, **body):
    session = new_session(caller, **body)
    assert caller.post(f"/sessions/{session['id']}/start").status_code == 200
    return session


def test_healthz_is_at_the_root_and_needs_no_token(app):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"


def test_create_returns_201_with_the_stored_session(admin):
    session = new_session(admin, label="survey.csv", params={"n": 3}, meta={"original_filename": "survey.csv"})
    assert session["state"] == "pending" and session["owner"] == "alice@example.com"
    assert session["params"] == {"n": 3} and session["meta"] == {"original_filename": "survey.csv"}
    assert admin.get(f"/sessions/{session['id']}").json == session


def test_a_user_creates_registered_kinds_as_themselves(callers):
    session = callers.alice.post("/sessions", {"kind": USER_KIND}).json
    assert session["owner"] == "alice@example.com"
    assert "cost" not in session["usage"]
    refused = callers.alice.post("/sessions", {"kind": "external.job"})
    assert refused.status_code == 400 and "kind" in refused.json["error"]["message"]
    assert callers.alice.post("/sessions", {"kind": USER_KIND, "owner": "bob@example.com"}).status_code == 403


@pytest.mark.parametrize("body, field", [
    ({"kind": "Bad Kind"}, "kind"), ({"kind": "x", "label": "l" * 257}, "label"),
    ({"kind": "x", "labl": "typo"}, "labl"), ({"kind": 5}, "kind"), ({}, "kind"),
    ({"kind": "x", "params": [1]}, "params"), ({"kind": "x", "owner": ""}, "owner"),
    ({"kind": "x", "meta": {"v": "\ud800"}}, "body"),      # a lone surrogate is not valid JSON text
])
def test_create_refuses_bad_bodies_naming_the_field(admin, body, field):
    response = admin.post("/sessions", body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert response.json["error"]["message"].startswith(field)
    assert admin.get("/sessions").json["items"] == []


def test_non_json_bodies_are_415_and_malformed_json_is_400(admin):
    assert admin.post("/sessions", data="kind=x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert admin.post("/sessions", data="{", headers={"Content-Type": "application/json"}).status_code == 400
    nan = admin.post("/sessions", data='{"kind": "x", "meta": {"a": NaN}}', headers={"Content-Type": "application/json"})
    assert nan.status_code == 400


def test_bodies_over_one_mebibyte_are_413_and_logs_may_reach_ten(admin):
    assert admin.post("/sessions", {"kind": "x", "params": {"blob": "x" * (1024 * 1024)}}).status_code == 413
    session = running(admin)
    entries = [{"level": "info", "message": "y" * 8000}] * 200          # ~1.6 MB: fine on /logs
    assert admin.post(f"/sessions/{session['id']}/logs", {"entries": entries}).status_code == 201
    huge = [{"level": "info", "message": "z" * 8000}] * 1000            # ~8 MB: still under 10 MiB
    assert admin.post(f"/sessions/{session['id']}/logs", {"entries": huge}).status_code == 201
    too_big = '{"entries": [' + ",".join(['{"level":"info","message":"' + "q" * 8000 + '"}'] * 1400) + "]}"
    response = admin.post(f"/sessions/{session['id']}/logs", data=too_big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and error_code(response) == "request_entity_too_large"
    assert admin.get(f"/sessions/{session['id']}").json["log_count"] == 1200


def test_a_body_without_content_length_is_read_and_limited_the_same_way(admin):
    """Chunked bodies (no Content-Length; the server terminates the stream) take werkzeug's
    streaming path instead of the direct read, under the same 1 MiB and 10 MiB limits."""
    session = running(admin)
    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    terminated = {"wsgi.input_terminated": True}
    report = b'{"progress": {"current": 3, "total": 4}}'
    response = admin.post(f"/sessions/{session['id']}/progress", input_stream=io.BytesIO(report),
                          headers=chunked, environ_overrides=terminated)
    assert response.status_code == 200 and response.json == {"state": "running", "stop_requested": False}
    big = b'{"progress": {"blob": "' + b"x" * (1024 * 1024) + b'"}}'
    response = admin.post(f"/sessions/{session['id']}/progress", input_stream=io.BytesIO(big),
                          headers=chunked, environ_overrides=terminated)
    assert response.status_code == 413 and error_code(response) == "request_entity_too_large"
    assert admin.get(f"/sessions/{session['id']}").json["progress"] == {"current": 3, "total": 4, "percent": 75.0}


def test_list_is_newest_first_with_filters_and_cursor_pages(admin):
    ids = [new_session(admin, label=f"file-{i}.csv")["id"] for i in range(5)]
    first = admin.get("/sessions?limit=2").json
    second = admin.get(f"/sessions?limit=2&cursor={first['next_cursor']}").json
    third = admin.get(f"/sessions?limit=2&cursor={second['next_cursor']}").json
    assert [s["id"] for s in first["items"] + second["items"] + third["items"]] == ids[::-1]
    assert third["next_cursor"] is None
    assert [s["id"] for s in admin.get("/sessions?q=FILE-3").json["items"]] == [ids[3]]
    assert admin.get("/sessions?state=running").json["items"] == []


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"), ("state=done", "state"),
    ("cursor=%21%21", "cursor"), ("colour=red", "colour"), ("kind=Bad", "kind"),
])
def test_list_refuses_bad_queries_naming_the_parameter(admin, query, field):
    response = admin.get(f"/sessions?{query}")
    assert response.status_code == 400 and response.json["error"]["message"].startswith(field)


def test_users_only_ever_list_their_own_sessions(callers):
    new_session(callers.admin, kind=USER_KIND, owner="bob@example.com")
    mine = callers.alice.post("/sessions", {"kind": USER_KIND}).json
    assert [s["id"] for s in callers.alice.get("/sessions").json["items"]] == [mine["id"]]
    assert callers.alice.get("/sessions?owner=bob@example.com").status_code == 403


def test_get_of_a_malformed_id_is_400_and_of_an_unknown_one_404(admin):
    assert admin.get("/sessions/not-a-uuid").status_code == 400
    response = admin.get(f"/sessions/{uuid.uuid4()}")
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_start_moves_pending_to_running_and_twice_is_409(admin):
    session = new_session(admin)
    started = admin.post(f"/sessions/{session['id']}/start")
    assert started.status_code == 200 and started.json["state"] == "running"
    again = admin.post(f"/sessions/{session['id']}/start")
    assert again.status_code == 409 and error_code(again) == "invalid_transition"


def test_progress_merges_and_answers_state_and_stop_flag(admin):
    session = running(admin, meta={"user": "alice", "original_filename": "in.csv"})
    url = f"/sessions/{session['id']}/progress"
    assert admin.post(url, {"progress": {"current": 1, "total": 4, "step": "load"}}).json == \
        {"state": "running", "stop_requested": False}
    admin.post(url, {"progress": {"step": None, "current": 2}, "meta": {"rows": 10},
                     "usage": {"tokens": 5, "cost": 0.5}})
    stored = admin.get(f"/sessions/{session['id']}").json
    assert stored["progress"] == {"current": 2, "total": 4, "percent": 50.0}
    assert stored["meta"] == {"user": "alice", "original_filename": "in.csv", "rows": 10}
    assert stored["usage"] == {"tokens": 5, "cost": 0.5} and stored["label"] == session["label"]
    admin.post(f"/sessions/{session['id']}/stop")
    assert admin.post(url, {"progress": {"current": 3}}).json["stop_requested"] is True


@pytest.mark.parametrize("body, field", [
    ({"progress": [1]}, "progress"), ({"usage": {"tokens": -1}}, "usage.tokens"),
    ({"usage": {"tokens": "5"}}, "usage.tokens"), ({"usage": {"dollars": 1}}, "usage.dollars"),
    ({"progres": {}}, "progres"),
])
def test_progress_refuses_bad_reports_and_stores_nothing(admin, body, field):
    session = running(admin)
    before = admin.get(f"/sessions/{session['id']}").json
    response = admin.post(f"/sessions/{session['id']}/progress", body)
    assert response.status_code == 400 and response.json["error"]["message"].startswith(field)
    assert admin.get(f"/sessions/{session['id']}").json == before


def test_progress_on_a_pending_or_finished_session_is_409(admin):
    pending = new_session(admin)
    assert admin.post(f"/sessions/{pending['id']}/progress", {"progress": {}}).status_code == 409


def test_logs_append_with_gapless_seq_and_page_with_after(admin):
    session = running(admin)
    url = f"/sessions/{session['id']}/logs"
    assert admin.post(url, {"entries": [{"level": "info", "message": "a"}, {"level": "error", "message": "b",
                                                                            "fields": {"k": 1}}]}).json == \
        {"first_seq": 1, "last_seq": 2}
    assert admin.post(url, {"entries": [{"level": "debug", "message": "c"}]}).status_code == 201
    page = admin.get(f"{url}?after=1&limit=1").json
    assert [e["seq"] for e in page["entries"]] == [2] and page["next_after"] == 2
    assert page["entries"][0]["fields"] == {"k": 1} and page["entries"][0]["ts"].endswith("Z")


@pytest.mark.parametrize("body, field", [
    ({"entries": []}, "entries"), ({"entries": [{"level": "fatal", "message": "m"}]}, "entries[0].level"),
    ({"entries": [{"level": "info"}]}, "entries[0].message"),
    ({"entries": [{"level": "info", "message": "m", "extra": 1}]}, "entries[0].extra"),
    ({"entries": [{"level": "info", "message": "m"}] * 1001}, "entries"),
])
def test_log_batches_are_refused_whole_naming_the_field(admin, body, field):
    session = running(admin)
    response = admin.post(f"/sessions/{session['id']}/logs", body)
    assert response.status_code == 400 and response.json["error"]["message"].startswith(field)
    assert admin.get(f"/sessions/{session['id']}").json["log_count"] == 0


def test_logs_keep_the_reporters_at_in_utc_and_null_when_not_sent(admin):
    session = running(admin)
    url = f"/sessions/{session['id']}/logs"
    assert admin.post(url, {"entries": [
        {"level": "info", "message": "zulu", "at": "2026-03-01T10:00:00.123456Z"},
        {"level": "info", "message": "east", "at": "2026-03-01T12:00:00.123456+02:00"},
        {"level": "info", "message": "null", "at": None}, {"level": "info", "message": "absent"}]}).status_code == 201
    entries = admin.get(url).json["entries"]
    assert [e["at"] for e in entries] == ["2026-03-01T10:00:00.123456Z"] * 2 + [None, None]
    assert all(e["ts"].endswith("Z") for e in entries)


@pytest.mark.parametrize("at", ["2026-03-01T10:00:00", "yesterday", "2026-02-30T00:00:00Z", "1999-12-31T23:59:59Z",
                                "2000-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", 1772359200, ["2026"]])
def test_a_naive_malformed_or_out_of_range_at_is_a_400_naming_it(admin, at):
    session = running(admin)
    url = f"/sessions/{session['id']}/logs"
    response = admin.post(url, {"entries": [{"level": "info", "message": "m", "at": at},
                                            {"level": "info", "message": "fine"}]})
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert response.json["error"]["message"].startswith("entries[0].at")
    assert admin.get(url).json["entries"] == []


def test_log_query_limits_are_enforced(admin):
    session = running(admin)
    assert admin.get(f"/sessions/{session['id']}/logs?limit=5001").status_code == 400
    assert admin.get(f"/sessions/{session['id']}/logs?after=-1").status_code == 400


def test_the_log_cap_is_a_409_that_stores_nothing(tmp_path):
    from webapp import create_app
    from api_support import ADMIN_TOKEN, Caller

    app = create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_MAX_LOG_ENTRIES": "3",
                      "RUNBOARD_ADMIN_TOKEN": ADMIN_TOKEN})
    admin = Caller(app.test_client(), ADMIN_TOKEN)
    session = running(admin)
    url = f"/sessions/{session['id']}/logs"
    admin.post(url, {"entries": [{"level": "info", "message": "m"}] * 2})
    response = admin.post(url, {"entries": [{"level": "info", "message": "m"}] * 2})
    assert response.status_code == 409 and error_code(response) == "log_limit_exceeded"
    assert (response.json["error"]["stored"], response.json["error"]["limit"]) == (2, 3)   # a client fits to them
    assert admin.get(f"/sessions/{session['id']}").json["log_count"] == 2


def test_stop_cancels_pending_with_200_and_flags_running_with_202(admin):
    pending = new_session(admin)
    stopped = admin.post(f"/sessions/{pending['id']}/stop")
    assert stopped.status_code == 200 and stopped.json["state"] == "stopped"
    live = running(admin)
    flagged = admin.post(f"/sessions/{live['id']}/stop")
    assert flagged.status_code == 202 and flagged.json["stop_requested"] and flagged.json["state"] == "running"
    assert admin.post(f"/sessions/{pending['id']}/stop").status_code == 409


def test_finish_is_idempotent_for_the_same_state_and_409_for_another(admin):
    session = running(admin)
    url = f"/sessions/{session['id']}/finish"
    done = admin.post(url, {"state": "completed", "result": {"mean": 1.5}})
    assert done.status_code == 200 and done.json["result"] == {"mean": 1.5}
    assert admin.post(url, {"state": "completed"}).json == done.json
    assert admin.post(url, {"state": "failed"}).status_code == 409
    assert admin.post(url, {"state": "running"}).status_code == 400


def test_snapshot_counts_and_lists_per_state(admin):
    running(admin)
    new_session(admin)
    snapshot = admin.get("/admin/snapshot?limit=5").json
    assert snapshot["counts"] == {"pending": 1, "running": 1, "completed": 0, "failed": 0, "stopped": 0}
    assert {state: len(items) for state, items in snapshot["sessions"].items()}["running"] == 1
    assert admin.get("/admin/snapshot?limit=0").status_code == 400


def test_workers_heartbeat_and_list_with_status(admin):
    beat = admin.post("/workers/heartbeat", {"worker_id": "w-1", "host": "alpha", "pid": 42, "active": 2})
    assert beat.status_code == 200 and beat.json["status"] == "ok"
    workers = admin.get("/workers").json["workers"]
    assert [(w["worker_id"], w["pid"], w["status"]) for w in workers] == [("w-1", 42, "ok")]
    assert admin.post("/workers/heartbeat", {"worker_id": "w-1", "host": "alpha"}).status_code == 400


def test_a_worker_id_a_start_takes_is_one_a_heartbeat_takes(admin):
    """Up to 256 characters either way, so a session's worker_id always matches a worker
    that can heartbeat under it."""
    longest = "celery@" + "h" * 249
    session = admin.post("/sessions", {"kind": "external.job"}).json
    assert admin.post(f"/sessions/{session['id']}/start", {"worker_id": longest}).json["worker_id"] == longest
    assert admin.post("/workers/heartbeat", {"worker_id": longest, "host": "h", "pid": 1}).status_code == 200
    assert [w["worker_id"] for w in admin.get("/workers").json["workers"]] == [longest]
    refused = admin.post("/workers/heartbeat", {"worker_id": longest + "h", "host": "h", "pid": 1})
    assert refused.status_code == 400 and "worker_id" in refused.json["error"]["message"]


def test_usage_shows_cost_to_staff_and_only_own_tokens_to_users(callers):
    mine = callers.admin.post("/sessions", {"kind": USER_KIND, "owner": "alice@example.com",
                                            "meta": {"engine": "gpt"}}).json
    theirs = callers.admin.post("/sessions", {"kind": USER_KIND, "owner": "bob@example.com"}).json
    for session, tokens in ((mine, 10), (theirs, 99)):
        callers.admin.post(f"/sessions/{session['id']}/start")
        callers.worker.post(f"/sessions/{session['id']}/progress", {"usage": {"tokens": tokens, "cost": 1.25}})
    staff = callers.admin.get("/usage?by=owner").json["rows"]
    assert {r["key"]: (r["tokens"], r["cost"]) for r in staff} == {"alice@example.com": (10, 1.25),
                                                                  "bob@example.com": (99, 1.25)}
    alice = callers.alice.get("/usage?by=engine").json["rows"]
    assert alice == [{"key": "gpt", "sessions": 1, "tokens": 10}]
    assert callers.admin.get("/usage?by=day").status_code == 400
    assert callers.admin.get("/usage?since=yesterday").status_code == 400
    assert callers.admin.get("/usage?since=2000-01-01T00:00:00Z").json["rows"]


def test_no_response_carries_a_traceback_and_security_headers_are_set(admin):
    response = admin.post("/sessions", data="{", headers={"Content-Type": "application/json"})
    assert "Traceback" not in response.get_data(as_text=True)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_integers_beyond_64_bits_round_trip_through_the_api(admin):
    session = running(admin)
    admin.post(f"/sessions/{session['id']}/progress", {"progress": {"current": 2**70, "total": 2**71}})
    stored = admin.get(f"/sessions/{session['id']}").json
    assert stored["progress"]["current"] == 2**70 and stored["progress"]["percent"] == 50.0


@pytest.mark.parametrize("query, field", [
    ("limit=5.0", "limit"), ("limit=%205", "limit"), ("limit=1e1", "limit"), ("state=running&state=failed", "state"),
])
def test_query_values_must_be_written_exactly_once_and_exactly(admin, query, field):
    response = admin.get(f"/sessions?{query}")
    assert response.status_code == 400 and response.json["error"]["message"].startswith(field)


# -- bodies of start and stop -------------------------------------------------------------
def test_start_takes_an_optional_worker_id_and_keeps_it(admin):
    named = new_session(admin)
    started = admin.post(f"/sessions/{named['id']}/start", {"worker_id": "celery@box-1"})
    assert started.status_code == 200 and started.json["worker_id"] == "celery@box-1"
    assert admin.get(f"/sessions/{named['id']}").json["worker_id"] == "celery@box-1"
    for body in ({}, {"worker_id": None}):
        session = new_session(admin)
        response = admin.post(f"/sessions/{session['id']}/start", body)
        assert response.status_code == 200 and response.json["worker_id"] is None, body
    session = new_session(admin)
    empty = admin.post(f"/sessions/{session['id']}/start", data=b"", headers={"Content-Type": "application/json"})
    assert empty.status_code == 200 and empty.json["worker_id"] is None
    assert running(admin)["worker_id"] is None                     # no body at all


@pytest.mark.parametrize("body, field", [
    ({"worker_id": ""}, "worker_id"), ({"worker_id": "w" * 257}, "worker_id"), ({"worker_id": 7}, "worker_id"),
    ({"worker": "typo"}, "worker"), ({"worker_id": "a\x00b"}, "worker_id"),
])
def test_start_refuses_a_bad_body_naming_the_field_and_stays_pending(admin, body, field):
    session = new_session(admin)
    response = admin.post(f"/sessions/{session['id']}/start", body)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert response.json["error"]["message"].startswith(field)
    assert admin.get(f"/sessions/{session['id']}").json["state"] == "pending"


def test_stop_takes_no_fields(admin):
    for body in ({}, None):
        session = running(admin)
        assert admin.post(f"/sessions/{session['id']}/stop", body).status_code == 202
    session = running(admin)
    response = admin.post(f"/sessions/{session['id']}/stop", {"reason": "because"})
    assert response.status_code == 400 and response.json["error"]["message"] == "reason: unknown field"
    assert not admin.get(f"/sessions/{session['id']}").json["stop_requested"]


@pytest.mark.parametrize("action", ["start", "stop"])
def test_start_and_stop_refuse_what_they_cannot_take(admin, action):
    session = new_session(admin)
    url = f"/sessions/{session['id']}/{action}"
    json_type = {"Content-Type": "application/json"}
    big = admin.post(url, data=b'{"x": "' + b"x" * (1024 * 1024 + 100 * 1024) + b'"}', headers=json_type)
    assert big.status_code == 413 and error_code(big) == "request_entity_too_large"
    assert admin.post(url, data="worker_id=w", headers={"Content-Type": "text/plain"}).status_code == 415
    assert admin.post(url, data=b"{}", headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
    for raw in (b"{", b"[]", b"null", b'"text"', b"{} {}"):
        response = admin.post(url, data=raw, headers=json_type)
        assert response.status_code == 400 and error_code(response) == "validation_error", raw
    chunked = admin.post(url, input_stream=io.BytesIO(b"x" * (1024 * 1024 + 1)),
                         headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                         environ_overrides={"wsgi.input_terminated": True})
    assert chunked.status_code == 413
    assert admin.get(f"/sessions/{session['id']}").json["state"] == "pending"


def test_the_document_marks_start_and_stop_bodies_optional(admin):
    paths = admin.get("/openapi.json").json["paths"]
    for action, model in (("start", "StartSession"), ("stop", "NoBody")):
        body = paths["/sessions/{session_id}/" + action]["post"]["requestBody"]
        assert body == {"required": False, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{model}"}}}}
    assert paths["/sessions"]["post"]["requestBody"]["required"] is True


def test_every_post_endpoint_declares_its_body():
    from webapp.api.endpoints import REGISTRY, endpoint

    assert all(ep.body is not None for ep in REGISTRY if ep.method == "POST")
    with pytest.raises(TypeError, match="must declare its body"):
        endpoint(None, "POST", "/nothing", summary="x")
