"""Every endpoint × every kind of caller → the status SPEC §4 promises."""
from __future__ import annotations

import pytest

from api_support import USER_KIND, error_code

CALLERS = ["anonymous", "bad", "revoked", "alice", "bob", "worker", "admin", "bootstrap"]

# name: (method, path template, body, session state needed, {caller: status})
ENDPOINTS = {
    "create": ("POST", "/sessions", {"kind": USER_KIND}, None,
               {"alice": 201, "bob": 201, "worker": 201, "admin": 201}),
    "list": ("GET", "/sessions", None, None, {"alice": 200, "bob": 200, "worker": 200, "admin": 200}),
    "get": ("GET", "/sessions/{id}", None, "pending", {"alice": 200, "bob": 404, "worker": 200, "admin": 200}),
    "start": ("POST", "/sessions/{id}/start", None, "pending",
              {"alice": 403, "bob": 404, "worker": 200, "admin": 200}),
    "progress": ("POST", "/sessions/{id}/progress", {"progress": {"current": 1}}, "running",
                 {"alice": 403, "bob": 404, "worker": 200, "admin": 200}),
    "append logs": ("POST", "/sessions/{id}/logs", {"entries": [{"level": "info", "message": "m"}]}, "running",
                    {"alice": 403, "bob": 404, "worker": 201, "admin": 201}),
    "read logs": ("GET", "/sessions/{id}/logs", None, "running",
                  {"alice": 200, "bob": 404, "worker": 200, "admin": 200}),
    "download": ("GET", "/sessions/{id}/logs/download", None, "running",
                 {"alice": 200, "bob": 404, "worker": 200, "admin": 200}),
    "stop": ("POST", "/sessions/{id}/stop", None, "running", {"alice": 202, "bob": 404, "worker": 202, "admin": 202}),
    "finish": ("POST", "/sessions/{id}/finish", {"state": "completed"}, "running",
               {"alice": 403, "bob": 404, "worker": 200, "admin": 200}),
    "snapshot": ("GET", "/admin/snapshot", None, None, {"alice": 403, "bob": 403, "worker": 403, "admin": 200}),
    "worker heartbeat": ("POST", "/workers/heartbeat", {"worker_id": "w", "host": "h", "pid": 1}, None,
                         {"alice": 403, "bob": 403, "worker": 200, "admin": 200}),
    "workers": ("GET", "/workers", None, None, {"alice": 403, "bob": 403, "worker": 403, "admin": 200}),
    "usage": ("GET", "/usage", None, None, {"alice": 200, "bob": 200, "worker": 200, "admin": 200}),
}


def expected_status(caller: str, table: dict) -> int:
    if caller in ("anonymous", "bad", "revoked"):
        return 401
    return table["admin" if caller == "bootstrap" else caller]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_each_endpoint_answers_each_caller_as_specified(callers, name, caller):
    method, template, body, state, table = ENDPOINTS[name]
    path = template
    if state is not None:
        session = callers.admin.post("/sessions", {"kind": USER_KIND, "owner": "alice@example.com"}).json
        if state == "running":
            assert callers.admin.post(f"/sessions/{session['id']}/start").status_code == 200
        path = template.format(id=session["id"])
    who = getattr(callers, caller)
    response = who.get(path) if method == "GET" else who.post(path, body)
    assert response.status_code == expected_status(caller, table), response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        error_code(response)
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


def test_openapi_document_needs_no_token(callers):
    assert callers.anonymous.get("/openapi.json").status_code == 200
