"""The login form under a probe: timing does not tell which names exist, the throttle
holds across workers, and ``next`` can neither split a header nor leave the panel."""
from __future__ import annotations

import statistics
import time
from urllib.parse import urlencode

import pytest

from security_support import ADMIN, Panel, gunicorn


def test_a_wrong_password_costs_the_same_for_an_existing_and_an_unknown_name(panel):
    token = panel.csrf()
    timings = {"existing": [], "unknown": []}
    for attempt in range(30):
        for case, name in (("existing", ADMIN), ("unknown", f"nobody-{attempt}")):
            started = time.perf_counter()
            response = panel.http.post("/admin/login", data={"csrf_token": token, "name": name,
                                                             "password": "not-the-password"})
            timings[case].append(time.perf_counter() - started)
            assert response.status_code == 401
    existing, unknown = (statistics.median(timings[c]) for c in ("existing", "unknown"))
    # Before: ~150 ms against ~9 ms.  Both now run one scrypt check.
    assert 0.5 < unknown / existing < 2.0, (existing, unknown)


@pytest.fixture(scope="module")
def throttled(tmp_path_factory):
    with gunicorn(tmp_path_factory, "throttle", RUNBOARD_LOGIN_LIMIT="10/minute").serving() as server:
        yield server


def test_the_login_throttle_counts_one_address_across_both_workers(throttled):
    browser = Panel(throttled.base_url)
    try:
        token = browser.csrf()
        cookie = "; ".join(f"{k}={v}" for k, v in browser.http.cookies.items())
    finally:
        browser.close()
    body = urlencode({"csrf_token": token, "name": ADMIN, "password": "wrong-password"})
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    connections = [throttled.connection_to(pid) for pid in sorted(throttled.worker_pids())]
    assert len(connections) == 2

    def attempt(connection) -> int:
        connection.request("POST", "/admin/login", body=body, headers=headers)
        with connection.getresponse() as response:
            response.read()
            return response.status

    try:
        statuses = [attempt(connections[n % 2]) for n in range(10)]      # 5 on each worker
        assert statuses == [401] * 10
        assert attempt(connections[0]) == 429 and attempt(connections[1]) == 429
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("target", ["/admin/\r\nSet-Cookie: x=1", "/admin/\nx", "/admin/\x00", "/admin/\x7f"])
def test_a_next_holding_control_characters_is_a_400_that_logs_nobody_in(panel, target):
    response = panel.login(next=target)
    assert response.status_code == 400
    assert "set-cookie" not in response.headers
    assert "control characters" in response.text
    assert not panel.opens_overview()


@pytest.mark.parametrize("target", ["/admin/../..//evil.example", "/admin/%2e%2e/%2e%2e//evil.example",
                                    "/admin//evil.example", "/admin/./../api/v1/sessions", "/admin/%0d%0aX: y", "/admin\\..\\evil",
                                    "//evil.example/admin", "https://evil.example/admin", "/adminx"])
def test_a_next_that_resolves_outside_the_panel_is_not_followed(panel, target):
    response = panel.login(next=target)
    assert response.status_code == 302 and response.headers["location"] == "/admin/"


@pytest.mark.parametrize("target", ["/admin/history?state=failed", "/admin/sessions/abc", "/admin"])
def test_a_next_inside_the_panel_is_followed(panel, target):
    response = panel.login(next=target)
    assert response.status_code == 302 and response.headers["location"] == target
