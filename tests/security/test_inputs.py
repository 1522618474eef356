"""Inputs the probe turned into 500s, and the smaller findings (one charset, no-store,
the usage cap), re-run over HTTP against gunicorn."""
from __future__ import annotations

import pytest

from repositories import validation as check


def finished_session(server) -> str:
    status, created = server.call("POST", "/api/v1/sessions", {"kind": "probe.external"})
    assert status == 201, created
    assert server.call("POST", f"/api/v1/sessions/{created['id']}/start")[0] == 200
    status, body = server.call("POST", f"/api/v1/sessions/{created['id']}/logs",
                               {"entries": [{"level": "info", "message": "résumé ✓"}]})
    assert status == 201, body
    status, body = server.call("POST", f"/api/v1/sessions/{created['id']}/finish", {"state": "completed"})
    assert status == 200, body
    return created["id"]


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00",
                                   "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_usage_start_at_the_ends_of_the_calendar_is_a_400_naming_since(server, since):
    status, body = server.call("GET", f"/api/v1/usage?since={since}")
    assert status == 400, body
    assert body["error"]["message"].startswith("since:")


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=0001-01-01", "from=9999-12-31&to=9999-12-31"])
def test_history_dates_at_the_ends_of_the_calendar_are_reported_not_a_500(server, panel, query):
    finished_session(server)
    assert panel.login().status_code == 302
    response = panel.http.get(f"/admin/history?{query}")
    assert response.status_code == 200                   # the panel's way: the filter shown as refused
    assert 'data-testid="filter-problem"' in response.text and "must be between" in response.text


def test_the_text_download_names_its_charset_once(server, panel):
    session_id = finished_session(server)
    assert panel.login().status_code == 302
    for response in (panel.http.get(f"/admin/sessions/{session_id}/download.txt"),
                     _api_download(server, session_id)):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert "résumé ✓" in response.text


def _api_download(server, session_id):
    import httpx

    from gunicorn_support import TOKEN
    return httpx.get(f"{server.base_url}/api/v1/sessions/{session_id}/logs/download?format=txt",
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20)


def test_authenticated_pages_and_api_answers_are_no_store(server, panel):
    import httpx

    from gunicorn_support import TOKEN
    session_id = finished_session(server)
    assert panel.login().status_code == 302
    for path in ["/admin/", "/admin/history", f"/admin/sessions/{session_id}", f"/admin/sessions/{session_id}/summary",
                 "/admin/overview/fragment", "/admin/usage", "/admin/workers", f"/admin/sessions/{session_id}/download.json"]:
        response = panel.http.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path
    for path in [f"/api/v1/sessions/{session_id}", "/api/v1/sessions", "/api/v1/admin/snapshot"]:
        response = httpx.get(server.base_url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20)
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store", path


def test_a_report_that_would_take_usage_across_sessions_past_the_cap_is_refused(server):
    owner = "capped@example.com"
    sessions = []
    for _ in range(2):
        status, created = server.call("POST", "/api/v1/sessions", {"kind": "probe.usage", "owner": owner})
        assert status == 201
        server.call("POST", f"/api/v1/sessions/{created['id']}/start")
        sessions.append(created["id"])
    step = check.MAX_TOKENS_DELTA
    reports = [sessions[0]] * (check.MAX_TOKENS_TOTAL // step - 1) + [sessions[1]]
    for session_id in reports:                   # the hour's total reaches the cap exactly
        status, body = server.call("POST", f"/api/v1/sessions/{session_id}/progress", {"usage": {"tokens": step}})
        assert status == 200, body
    status, body = server.call("POST", f"/api/v1/sessions/{sessions[1]}/progress",
                               {"progress": {"current": 1}, "usage": {"tokens": 1}})
    assert status == 400 and body["error"]["message"].startswith("usage.tokens:"), body
    assert server.session(sessions[1])["usage"]["tokens"] == step and server.session(sessions[1])["progress"] == {}
    status, body = server.call("GET", "/api/v1/usage?by=owner")
    assert status == 200
    assert {r["key"]: r["tokens"] for r in body["rows"]}[owner] == check.MAX_TOKENS_TOTAL
