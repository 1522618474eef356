"""Hypothesis on the bodies workers send most: any JSON at all gets a 2xx or a clean 4xx,
and a refused report or log batch leaves the stored session exactly as it was."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15)
PROGRESS_BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries({}, optional={"progress": JSON, "meta": JSON, "usage": JSON, "extra": JSON}))
LOG_BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries({"entries": st.lists(st.one_of(JSON, st.fixed_dictionaries(
        {"level": st.sampled_from(["info", "error", "fatal", 3]), "message": JSON},
        optional={"fields": JSON})), max_size=5)}))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def running_session(caller):
    session = caller.post("/sessions", {"kind": "external.job"}).json
    caller.post(f"/sessions/{session['id']}/start")
    return session["id"]


def post_raw(caller, path, body):
    return caller.post(path, data=json.dumps(body), headers={"Content-Type": "application/json"})


@SETTINGS
@given(body=PROGRESS_BODIES)
def test_any_progress_body_is_answered_cleanly_and_refusals_change_nothing(callers, body):
    session_id = running_session(callers.worker)
    before = callers.admin.get(f"/sessions/{session_id}").json
    response = post_raw(callers.worker, f"/sessions/{session_id}/progress", body)
    assert response.status_code in (200, 400), response.json
    if response.status_code == 400:
        assert callers.admin.get(f"/sessions/{session_id}").json == before


@SETTINGS
@given(body=LOG_BODIES)
def test_any_log_body_is_answered_cleanly_and_refusals_store_nothing(callers, body):
    session_id = running_session(callers.worker)
    response = post_raw(callers.worker, f"/sessions/{session_id}/logs", body)
    assert response.status_code in (201, 400), response.json
    stored = callers.admin.get(f"/sessions/{session_id}").json["log_count"]
    if response.status_code == 400:
        assert stored == 0
    else:
        assert stored == response.json["last_seq"] == len(body["entries"])
