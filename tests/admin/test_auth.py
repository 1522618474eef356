"""Login, logout, the closed-by-default panel, the login throttle and the HTML error pages."""
from __future__ import annotations

import re

import pytest

from admin_support import ADMIN, PASSWORD, build_app, login, text
from webapp.store import CREDENTIALS_KEY, close_repository

PAGES = ["/admin/", "/admin/overview/fragment", "/admin/history", "/admin/workers", "/admin/usage",
         "/admin/sessions/00000000-0000-4000-8000-000000000000",
         "/admin/sessions/00000000-0000-4000-8000-000000000000/logs?after=0",
         "/admin/sessions/00000000-0000-4000-8000-000000000000/summary",
         "/admin/sessions/00000000-0000-4000-8000-000000000000/download.txt"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_redirects_to_the_login_when_not_logged_in(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302
    assert response.location.startswith("/admin/login?next=")


def test_every_post_needs_a_login_too(app):
    client = app.test_client()
    for path in ["/admin/runs", "/admin/sessions/00000000-0000-4000-8000-000000000000/stop"]:
        assert client.post(path).location.startswith("/admin/login")


def test_a_good_login_lands_on_the_page_asked_for(app):
    client = app.test_client()
    response = client.post("/admin/login", data={"name": ADMIN, "password": PASSWORD, "next": "/admin/usage"})
    assert (response.status_code, response.location) == (302, "/admin/usage")
    assert client.get("/admin/usage").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin", "/api/v1/sessions"])
def test_the_login_never_redirects_outside_the_panel(app, target):
    response = app.test_client().post("/admin/login", data={"name": ADMIN, "password": PASSWORD, "next": target})
    assert response.location == "/admin/"


@pytest.mark.parametrize("name, password", [(ADMIN, "wrong-password"), ("nobody", PASSWORD), ("", "")])
def test_bad_credentials_get_one_generic_error(app, name, password):
    response = login(app.test_client(), name, password)
    assert response.status_code == 401
    assert "Invalid name or password." in text(response)
    assert 'id="login-error"' in response.get_data(as_text=True)


def test_a_user_who_is_not_an_admin_gets_the_same_generic_error(app):
    app.extensions[CREDENTIALS_KEY].create_user(name="plain", password="plain-password", is_admin=False)
    response = login(app.test_client(), "plain", "plain-password")
    assert response.status_code == 401 and "Invalid name or password." in text(response)


def test_logout_ends_the_login(client):
    assert client.post("/admin/logout").status_code == 302
    assert client.get("/admin/").status_code == 302


def test_the_login_session_cookie_is_http_only_and_same_site(app):
    response = login(app.test_client())
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_attempts_are_rate_limited_per_address_with_a_429_page(store_url):
    app = build_app(store_url, RUNBOARD_LOGIN_LIMIT="3/minute")
    try:
        app.extensions[CREDENTIALS_KEY].create_user(name=ADMIN, password=PASSWORD, is_admin=True)
        client = app.test_client()
        assert [login(client, ADMIN, "wrong-password").status_code for _ in range(3)] == [401] * 3
        refused = login(client, ADMIN, PASSWORD)              # even the right password, now
        assert refused.status_code == 429
        assert refused.mimetype == "text/html" and int(refused.headers["Retry-After"]) >= 1
        assert 'data-status="429"' in refused.get_data(as_text=True)
        other = app.test_client()
        assert login(other, ADMIN, PASSWORD).status_code == 429         # same address
        assert app.test_client().post("/admin/login", data={"name": ADMIN, "password": PASSWORD},
                                      environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 302
        assert client.get("/admin/login").status_code == 200              # only POSTs count
    finally:
        close_repository(app)


def test_with_no_admin_yet_the_panel_explains_how_to_create_one(store_url):
    app = build_app(store_url)
    try:
        client = app.test_client()
        for path in ["/admin/", "/admin/login", "/admin/history"]:
            response = client.get(path)
            assert response.status_code == 503
            assert 'id="setup-instructions"' in response.get_data(as_text=True)
        assert login(client).status_code == 503                     # nothing to log in to
        expected = "RUNBOARD_ADMIN_PASSWORD" if store_url == "memory://" else "flask --app wsgi users create NAME --admin"
        assert expected in text(client.get("/admin/"))
    finally:
        close_repository(app)


def test_admin_error_pages_are_html_with_the_page_headers(client):
    response = client.get("/admin/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert 'id="error-status" data-status="404"' in response.get_data(as_text=True)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert client.post("/admin/history").status_code == 405


def test_an_unexpected_error_under_admin_is_a_bare_500_page(app, client):
    def boom():
        raise RuntimeError("secret internals")
    app.view_functions["admin.workers"] = boom
    response = client.get("/admin/workers")
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert "secret internals" not in response.get_data(as_text=True)


def test_the_api_keeps_its_json_errors(client):
    response = client.get("/api/v1/sessions")
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"


def test_the_panels_script_and_styles_are_static_files(client):
    for path in ["/static/admin.js", "/static/admin.css"]:
        response = client.get(path)
        assert response.status_code == 200
        response.close()


def test_pages_have_one_h1_a_lang_and_a_skip_link(client, app):
    repo = app.extensions["runboard"]
    session = repo.start(repo.create(kind="batch", owner="ana").id)
    repo.append_logs(session.id, [{"level": "info", "message": "<b onclick=x>"}])
    for path in ["/admin/", "/admin/history", "/admin/workers", "/admin/usage", "/admin/nope",
                 f"/admin/sessions/{session.id}", f"/admin/sessions/{session.id}/stop", "/admin/login"]:
        page = client.get(path).get_data(as_text=True)
        assert page.count("<h1") == 1, path
        assert '<html lang="en">' in page and 'id="skip-link" href="#main"' in page
        assert not re.search(r"<[^>]*\s(style|onclick)=", page) and "<script>" not in page, path
    assert "&lt;b onclick=x&gt;" in client.get(f"/admin/sessions/{session.id}").get_data(as_text=True)


@pytest.mark.parametrize("trusted", [0, 1])
def test_the_throttle_believes_x_forwarded_for_only_from_a_configured_proxy(tmp_path, trusted):
    app = build_app(f"sqlite:///{tmp_path / 'proxy.db'}", RUNBOARD_LOGIN_LIMIT="2/minute",
                    RUNBOARD_TRUSTED_PROXIES=str(trusted))
    try:
        app.extensions[CREDENTIALS_KEY].create_user(name=ADMIN, password=PASSWORD, is_admin=True)
        client = app.test_client()

        def attempt(address):
            return client.post("/admin/login", data={"name": ADMIN, "password": "wrong-password"},
                               headers={"X-Forwarded-For": address}).status_code
        assert [attempt("203.0.113.1"), attempt("203.0.113.1")] == [401, 401]
        # Behind a proxy, another client has its own count; without one, a forged header
        # changes nothing: every request comes from the one peer address.
        assert attempt("203.0.113.2") == (401 if trusted else 429)
        assert attempt("203.0.113.1") == 429
    finally:
        close_repository(app)
