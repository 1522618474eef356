"""A demo run in a real browser against real gunicorn: started from the overview, watched
live (no reloads), filtered, stopped through the confirm() dialog, downloaded, and the
login closed again.  Also: the overview's live refresh keeps filters and scroll and pauses
in a hidden tab, and every page works with JavaScript off."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from browser_support import ADMIN, FINISHED, LONG_BATCH, PASSWORD, VIEWPORT, progress_value, sign_in

FRAGMENT = "/admin/overview/fragment"
LOG_ROWS = "tr[data-testid=log-row]"


@pytest.fixture
def running_batch(server):
    """A ~25 s batch run owned by the admin (through the API), stopped when the test ends."""
    session = server.start_job("batch", LONG_BATCH)
    yield session
    server.call("POST", f"/api/v1/sessions/{session['id']}/stop")
    server.wait_state(session["id"], FINISHED)


def wait_until_greater(page, expression: str, than: float, timeout: float = 10_000) -> float:
    """Poll ``expression`` (a JS expression) in the page until it exceeds ``than``."""
    page.wait_for_function(f"() => Number({expression}) > {than}", timeout=timeout)
    return page.evaluate(f"() => Number({expression})")


def mark_page(page) -> None:
    page.evaluate("() => { window.__marker = 1; }")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("() => window.__marker") == 1, "the page navigated or reloaded"


def start_demo_batch(page) -> str:
    """Through the overview's demo form; the panel then shows the new session's page."""
    page.select_option("#demo-kind", "batch")
    page.fill("#demo-label", "browser demo")
    page.fill("#demo-jobs", str(LONG_BATCH["jobs_per_phase"]))
    page.fill("#demo-fail-rate", str(LONG_BATCH["fail_rate"]))
    with page.expect_navigation():
        page.click("#demo-submit")
    assert "/admin/sessions/" in page.url
    return page.locator("#meta-id").inner_text().strip()


def watch_overview_progress(page, session_id: str) -> None:
    page.goto("/admin/")
    bar = f"#table-running tr[data-session-id='{session_id}'] progress[data-testid=session-progress]"
    page.wait_for_selector(bar)              # pending at first, perhaps: a refresh moves it
    mark_page(page)
    first = progress_value(page, bar)
    later = wait_until_greater(page, f"document.querySelector(\"{bar}\")?.value", first)
    assert later > first
    assert_not_reloaded(page)


def watch_log_tail(page) -> None:
    mark_page(page)
    before = page.locator(LOG_ROWS).count()
    wait_until_greater(page, f"document.querySelectorAll('{LOG_ROWS}').length", before)
    seqs = [int(s) for s in page.locator(LOG_ROWS).evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert_not_reloaded(page)


def check_level_filter(page) -> None:
    """Choosing a level submits the filter (JS), and the tail then only brings that level up."""
    levels = set(page.locator(LOG_ROWS).evaluate_all("rows => rows.map(r => r.dataset.level)"))
    assert "info" in levels, levels
    with page.expect_navigation():
        page.select_option("#log-level", "warning")
    assert "level=warning" in page.url
    mark_page(page)
    before = page.locator(LOG_ROWS).count()
    wait_until_greater(page, f"document.querySelectorAll('{LOG_ROWS}').length", before)
    levels = set(page.locator(LOG_ROWS).evaluate_all("rows => rows.map(r => r.dataset.level)"))
    assert levels <= {"warning", "error"}, levels
    assert_not_reloaded(page)


def check_local_time_toggle(page) -> None:
    first_time = page.locator(f"{LOG_ROWS} time").first
    utc = first_time.get_attribute("data-utc")
    assert first_time.inner_text() == utc
    page.check("#log-local-time")
    assert page.locator("#log-time-zone").inner_text() == "local"
    assert first_time.inner_text() != utc and not first_time.inner_text().endswith("Z")
    page.uncheck("#log-local-time")
    assert page.locator("#log-time-zone").inner_text() == "UTC"
    assert first_time.inner_text() == utc


def stop_through_dialog(page) -> None:
    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()
    page.on("dialog", accept)
    assert page.locator("#session-state").get_attribute("data-state") == "running"
    with page.expect_navigation():
        page.click("#stop-button")
    page.remove_listener("dialog", accept)
    assert dialogs and dialogs[0].startswith("Stop session"), dialogs
    assert "Stop requested" in page.locator("#flash-messages li[data-category=info]").inner_text()
    mark_page(page)
    page.wait_for_selector("#session-state[data-state=stopped]")
    assert page.locator("#session-state").inner_text().strip() == "stopped"
    assert_not_reloaded(page)


def download(page, selector: str) -> str:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_text(encoding="utf-8")


def check_downloads(page, session_id: str) -> None:
    text = download(page, "#download-txt")
    header, _, body = text.partition("\n\n")
    assert f"# session: {session_id}" in header.splitlines()
    assert "# state: stopped" in header.splitlines()
    lines = body.splitlines()
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert lines, text
    messages = [line.split(" ", 2)[2] for line in lines]
    assert messages.index("phase prepare started") < messages.index(f"stop requested by {ADMIN}")

    data = json.loads(download(page, "#download-json"))
    assert data["session"]["id"] == session_id and data["session"]["state"] == "stopped"
    entries = data["entries"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert len(entries) == len(lines) == int(re.search(r"# log_count: (\d+)", header).group(1))
    assert messages == [e["message"] for e in entries]
    # In seq order, each line shows when its entry happened (``at``, the job's clock) or,
    # for entries sent without one (the API's "stop requested by"), when it was stored.
    assert stamps == [e["at"] or e["ts"] for e in entries]
    assert any(e["at"] for e in entries) and any(e["at"] is None for e in entries)


def test_a_demo_run_is_watched_live_stopped_downloaded_and_the_login_closed(page, server):
    sign_in(page, ADMIN, PASSWORD)
    session_id = start_demo_batch(page)
    watch_overview_progress(page, session_id)

    with page.expect_navigation():
        page.click(f"#table-running tr[data-session-id='{session_id}'] a")
    watch_log_tail(page)
    check_level_filter(page)
    check_local_time_toggle(page)
    stop_through_dialog(page)
    check_downloads(page, session_id)

    with page.expect_navigation():
        page.click("#logout-button")
    assert "/admin/login" in page.url
    page.goto("/admin/")
    assert re.search(r"/admin/login\?next=(/|%2F)admin(/|%2F)?$", page.url), page.url
    assert page.locator("#login-form").is_visible()


def test_the_overview_refresh_keeps_filters_and_scroll_position(page, server, admin_state, running_batch):
    page.context.add_cookies(admin_state["cookies"])
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 400})   # short enough to scroll
    page.goto("/admin/")
    page.fill("#filter-owner", running_batch["owner"])
    with page.expect_navigation():
        page.click("#filters-apply")
    swaps = []
    page.on("response", lambda r: swaps.append(r.url) if FRAGMENT in r.url and r.status == 200 else None)
    page.evaluate("() => window.scrollTo(0, 200)")
    mark_page(page)
    deadline = time.monotonic() + 10
    while len(swaps) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(swaps) >= 2, f"two refreshed fragments expected, saw {swaps}"
    assert all(f"owner={running_batch['owner']}" in url for url in swaps), swaps
    assert page.input_value("#filter-owner") == running_batch["owner"]
    assert page.evaluate("() => window.scrollY") == 200
    assert page.locator(f"tr[data-session-id='{running_batch['id']}']").count() == 1
    assert_not_reloaded(page)


def test_the_overview_refresh_pauses_while_the_tab_is_hidden(page, admin_state):
    page.context.add_cookies(admin_state["cookies"])
    requests = []
    page.on("request", lambda r: requests.append(time.monotonic()) if FRAGMENT in r.url else None)
    page.goto("/admin/")
    page.wait_for_event("request", lambda r: FRAGMENT in r.url)       # the refresh runs
    page.evaluate("""() => {
        Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    page.wait_for_timeout(300)             # a request issued just before is reported late
    hidden_at = time.monotonic()
    page.wait_for_timeout(3000)
    assert [t for t in requests if t > hidden_at] == [], "fragment requests while hidden"
    with page.expect_request(lambda r: FRAGMENT in r.url, timeout=1000):   # visible again: at once
        page.evaluate("""() => {
            Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "visible"});
            document.dispatchEvent(new Event("visibilitychange"));
        }""")


def test_the_pages_work_without_javascript(browser, server):
    session = server.start_job("batch", LONG_BATCH)
    context = browser.new_context(base_url=server.base_url, viewport=VIEWPORT, java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sign_in(page, ADMIN, PASSWORD)
        assert page.locator("#live-status").inner_text() == "Reload the page to refresh."
        counts = {li.get_attribute("id")[len("count-"):]: int(li.get_attribute("data-count"))
                  for li in page.locator("#state-counts li").all()}
        status, snapshot = server.call("GET", "/api/v1/admin/snapshot")    # no run changes state meanwhile
        assert status == 200 and counts == snapshot["counts"] and counts["running"] >= 1, (counts, snapshot)

        with page.expect_navigation():
            page.click(f"#table-running tr[data-session-id='{session['id']}'] a")
        assert page.locator("#meta-id").inner_text() == session["id"]
        assert page.locator(LOG_ROWS).count() >= 1
        assert page.locator("#log-local-time").is_hidden()       # the JS-only toggle stays hidden

        with page.expect_navigation():
            page.click("#stop-button")                          # no confirm(): a confirmation page
        assert page.locator("h1").inner_text().startswith("Stop session")
        with page.expect_navigation():
            page.click("#stop-confirm-button")
        assert "Stop requested" in page.locator("#flash-messages").inner_text()
        server.wait_state(session["id"], "stopped")
        page.reload()
        assert page.locator("#session-state").get_attribute("data-state") == "stopped"
    finally:
        context.close()
        server.call("POST", f"/api/v1/sessions/{session['id']}/stop")


def test_the_session_page_follows_a_start_and_an_acknowledged_stop_without_a_reload(page, server, admin_state):
    """A session driven from outside (the API, as a worker would): the Details list picks up
    who started it, and once the stop is acknowledged nothing on the page still waits."""
    status, session = server.call("POST", "/api/v1/sessions", {"kind": "external.job", "owner": ADMIN})
    assert status == 201, session
    page.context.add_cookies(admin_state["cookies"])
    page.goto(f"/admin/sessions/{session['id']}")
    assert page.locator("#meta-worker").inner_text() == "—"
    mark_page(page)
    status, started = server.call("POST", f"/api/v1/sessions/{session['id']}/start", {"worker_id": "browser@box-1"})
    assert status == 200 and started["worker_id"] == "browser@box-1"
    page.wait_for_function("() => document.getElementById('meta-worker').textContent === 'browser@box-1'")
    assert page.locator("#meta-started time").count() == 1
    assert server.call("POST", f"/api/v1/sessions/{session['id']}/stop")[0] == 202
    page.wait_for_selector("#stop-status")
    assert server.call("POST", f"/api/v1/sessions/{session['id']}/finish", {"state": "stopped"})[0] == 200
    page.wait_for_selector("#session-state[data-state=stopped]")
    assert "waiting" not in page.locator("body").inner_text()
    assert page.locator("#meta-finished time").count() == 1
    assert_not_reloaded(page)
