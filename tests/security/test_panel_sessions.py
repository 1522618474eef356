"""Panel sessions end on the server (SPEC §12): a cookie copied before logout, before a
password change, or kept past the idle or the absolute lifetime opens nothing."""
from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest

from gunicorn_support import ROOT
from repositories.sql.credentials import SqlCredentialStore
from security_support import ADMIN, PASSWORD, InProcessServer, Panel
from webapp import create_app
from webapp.store import CREDENTIALS_KEY, EXTENSION_KEY, close_repository


def external_session(server) -> str:
    status, body = server.call("POST", "/api/v1/sessions", {"kind": "probe.external"})
    assert status == 201, body
    return body["id"]


def test_a_cookie_copied_before_logout_opens_nothing_after_it(server, panel):
    assert panel.login().status_code == 302
    assert panel.opens_overview()                   # a page view: the cookie now holds a CSRF secret too
    stolen = panel.copy()
    try:
        assert stolen.opens_overview()
        session_id = external_session(server)
        token = stolen.csrf(f"/admin/sessions/{session_id}")
        assert panel.logout().status_code == 302
        assert not panel.opens_overview()
        assert not stolen.opens_overview()
        refused = stolen.http.post(f"/admin/sessions/{session_id}/stop", data={"csrf_token": token})
        assert refused.status_code == 302 and refused.headers["location"].startswith("/admin/login")
        assert server.session(session_id)["stop_requested"] is False
    finally:
        stolen.close()


def test_a_password_change_ends_the_panel_sessions_it_had(server, tmp_path):
    first, second = Panel(server.base_url), Panel(server.base_url)
    try:
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "users", "create", "grace", "--admin",
                        "--password-stdin"], cwd=ROOT, env=server.env, input="grace-password-1\n", check=True,
                       capture_output=True, text=True, timeout=60)
        assert first.login("grace", "grace-password-1").status_code == 302
        assert second.login().status_code == 302                   # another user's login stays
        stolen = first.copy()
        changed = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "users", "set-password", "grace",
                                  "--password-stdin"], cwd=ROOT, env=server.env, input="grace-password-2\n",
                                 capture_output=True, text=True, timeout=60)
        assert changed.returncode == 0, changed.stderr
        assert "logged out" in changed.stdout
        assert not first.opens_overview() and not stolen.opens_overview()
        assert second.opens_overview()
        assert first.login("grace", "grace-password-1").status_code == 401
        assert first.login("grace", "grace-password-2").status_code == 302
        stolen.close()
    finally:
        first.close()
        second.close()


class Clock:
    def __init__(self):
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            return self.now

    def advance(self, **kwargs):
        with self._lock:
            self.now += timedelta(**kwargs)


@pytest.fixture
def clocked(tmp_path):
    """Idle 30 minutes, absolute 2 hours, the credential store on a fake clock."""
    app = create_app({"RUNBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'clocked.db'}", "RUNBOARD_SCHEDULER": "off",
                      "RUNBOARD_PANEL_IDLE_TIMEOUT": "30m", "RUNBOARD_PANEL_LIFETIME": "2h"})
    repo = app.extensions[EXTENSION_KEY]
    repo.create_schema()
    clock = Clock()
    app.extensions[CREDENTIALS_KEY] = SqlCredentialStore(repo.transactions, clock=clock)
    app.extensions[CREDENTIALS_KEY].create_user(name=ADMIN, password=PASSWORD, is_admin=True)
    server = InProcessServer(app)
    try:
        yield server, clock
    finally:
        server.close()
        close_repository(app)


def test_a_cookie_kept_past_the_idle_lifetime_opens_nothing(clocked):
    server, clock = clocked
    panel = Panel(server.base_url)
    try:
        assert panel.login().status_code == 302
        for _ in range(4):                          # in use: requests 25 minutes apart
            clock.advance(minutes=25)
            assert panel.opens_overview()
        stolen = panel.copy()
        clock.advance(minutes=31)
        assert not stolen.opens_overview()
        assert not panel.opens_overview()
        stolen.close()
    finally:
        panel.close()


def test_a_busy_panel_session_still_ends_at_its_absolute_lifetime(clocked):
    server, clock = clocked
    panel = Panel(server.base_url)
    try:
        assert panel.login().status_code == 302
        for _ in range(7):
            clock.advance(minutes=17)
            assert panel.opens_overview()           # 1 h 59 min in, never idle
        clock.advance(minutes=2)
        assert not panel.opens_overview()
        assert panel.login().status_code == 302     # a new login starts a new lifetime
        assert panel.opens_overview()
    finally:
        panel.close()


def test_only_the_panel_reads_or_sets_the_session_cookie(server, panel):
    """The JSON API and /healthz get Flask's null session: no Set-Cookie, whatever cookie
    comes along, and a panel cookie sent to the API neither logs anyone in nor changes."""
    assert panel.csrf() and panel.http.cookies.get("session")       # the panel set its cookie
    assert panel.login().status_code == 302 and panel.opens_overview()
    cookie = panel.http.cookies.get("session")
    for method, path in (("GET", "/healthz"), ("GET", "/api/v1/sessions"), ("POST", "/api/v1/sessions")):
        answer = panel.http.request(method, path, json={"kind": "probe.cookie"} if method == "POST" else None)
        assert "set-cookie" not in {k.lower() for k in answer.headers}, (path, answer.headers)
        if path.startswith("/api"):
            assert answer.status_code == 401                     # the cookie is not a bearer token
    assert panel.http.cookies.get("session") == cookie and panel.opens_overview()
