"""Every admin page, rendered by Chromium with data in it: an accessibility smoke check
(labels, headings, lang, names of images and buttons, WCAG text contrast) and a screenshot
of each (docs/screenshots/<page>.png, shown in the README, when RUNBOARD_SCREENSHOTS=1)."""
from __future__ import annotations

import pytest

from browser_support import LONG_BATCH, SCREENSHOTS, accessibility_problems

PHOTOGRAPHED = ("login", "overview", "detail", "history", "workers", "usage")


def create(server, kind: str, label: str, owner: str, params: dict | None = None) -> dict:
    status, body = server.call("POST", "/api/v1/sessions", {"kind": kind, "label": label, "owner": owner,
                                                            "params": params or {}})
    assert status == 201, body
    return body


def external_run(server, label: str, owner: str, tokens: int, cost: float) -> None:
    """A session reported by an outside worker, with usage (the panel's usage page)."""
    session_id = create(server, "llm_eval", label, owner)["id"]
    for path, body in [("start", None), ("progress", {"progress": {"current": 1, "total": 1},
                                                      "usage": {"tokens": tokens, "cost": cost}}),
                       ("finish", {"state": "completed", "result": {"score": 0.91}})]:
        status, answer = server.call("POST", f"/api/v1/sessions/{session_id}/{path}", body)
        assert status == 200, answer


@pytest.fixture(scope="module")
def showcase(server):
    """Finished runs of each kind for the history, usage for the chart, and one running
    batch (stopped at the end) for the overview and detail pages."""
    for label, params in [("quick batch", {"jobs_per_phase": 3, "job_seconds": 0}),
                          ("flaky batch", {"jobs_per_phase": 2, "job_seconds": 0, "fail_rate": 1.0})]:
        server.wait_state(create(server, "batch", label, "ana", params)["id"], ("completed", "failed"))
    stopped = create(server, "batch", "cancelled batch", "bo", LONG_BATCH)["id"]
    server.wait_running(stopped)
    server.call("POST", f"/api/v1/sessions/{stopped}/stop")
    server.wait_state(stopped, "stopped")
    external_run(server, "eval gpt-small", "ana", 12_400, 0.37)
    external_run(server, "eval gpt-large", "bo", 48_900, 2.15)
    running = create(server, "batch", "nightly import", "ana", LONG_BATCH)["id"]
    server.wait_running(running)
    yield {"running": running}
    server.call("POST", f"/api/v1/sessions/{running}/stop")
    server.wait_state(running, ("completed", "stopped"))


def open_page(page, name: str, session_id: str) -> None:
    """Go to the page and wait for what its screenshot should show."""
    paths = {"login": "/admin/login", "overview": "/admin/", "detail": f"/admin/sessions/{session_id}",
             "history": "/admin/history", "workers": "/admin/workers", "usage": "/admin/usage",
             "stop-confirm": f"/admin/sessions/{session_id}/stop", "not-found": "/admin/sessions/nope"}
    page.goto(paths[name])
    if name == "overview":
        page.wait_for_function(f"""() => Number(document.querySelector(
            "#table-running tr[data-session-id='{session_id}'] progress")?.value) > 0""")
    elif name == "detail":
        page.wait_for_function("() => document.querySelectorAll('tr[data-testid=log-row]').length >= 8")


@pytest.mark.parametrize("name", [*PHOTOGRAPHED, "stop-confirm", "not-found"])
def test_the_page_passes_the_accessibility_smoke_check(name, page, admin_state, showcase):
    if name != "login":
        page.context.add_cookies(admin_state["cookies"])
    open_page(page, name, showcase["running"])
    if name in PHOTOGRAPHED:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert accessibility_problems(page) == []
