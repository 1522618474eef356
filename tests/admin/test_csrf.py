"""CSRF: every POST form of the panel is refused without its token; the API is exempt."""
from __future__ import annotations

import re

import pytest

from admin_support import ADMIN, PASSWORD, build_app
from job_support import paused_runner
from webapp.store import CREDENTIALS_KEY, EXTENSION_KEY, close_repository


@pytest.fixture
def csrf_app(store_url):
    app = build_app(store_url, WTF_CSRF_ENABLED=True, RUNBOARD_ADMIN_TOKEN="a" * 32)
    paused_runner(app)
    app.extensions[CREDENTIALS_KEY].create_user(name=ADMIN, password=PASSWORD, is_admin=True)
    yield app
    close_repository(app)



def csrf_token(client, path="/admin/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    return match.group(1)


def logged_in(app):
    client = app.test_client()
    response = client.post("/admin/login", data={"name": ADMIN, "password": PASSWORD,
                                                 "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    return client


def test_the_login_form_is_refused_without_its_token(csrf_app):
    response = csrf_app.test_client().post("/admin/login", data={"name": ADMIN, "password": PASSWORD})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "CSRF" in response.get_data(as_text=True)


def test_every_form_of_a_logged_in_admin_is_refused_without_its_token(csrf_app):
    client = logged_in(csrf_app)
    session = csrf_app.extensions[EXTENSION_KEY].create(kind="batch", owner="ana")
    for path, data in [("/admin/logout", {}), ("/admin/runs", {"kind": "batch"}),
                       (f"/admin/sessions/{session.id}/stop", {"confirmed": "yes"})]:
        assert client.post(path, data=data).status_code == 400, path
    assert csrf_app.extensions[EXTENSION_KEY].get(session.id).state.value == "pending"
    assert client.get("/admin/").status_code == 200                     # still logged in


def test_forms_with_their_token_go_through(csrf_app):
    client = logged_in(csrf_app)
    session = csrf_app.extensions[EXTENSION_KEY].create(kind="batch", owner="ana")
    token = csrf_token(client, f"/admin/sessions/{session.id}")
    response = client.post(f"/admin/sessions/{session.id}/stop", data={"confirmed": "yes", "csrf_token": token})
    assert response.status_code == 302
    assert csrf_app.extensions[EXTENSION_KEY].get(session.id).state.value == "stopped"
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302


def test_the_bearer_token_api_needs_no_csrf_token(csrf_app):
    response = csrf_app.test_client().post("/api/v1/sessions", json={"kind": "external.job"},
                                           headers={"Authorization": "Bearer " + "a" * 32})
    assert response.status_code == 201
