"""Admin panel fixtures: an app per store with one admin login, and a logged-in client.

CSRF is off here (WTF_CSRF_ENABLED false) so page tests post plain forms; test_csrf.py
builds its apps with it on.  The runner is paused: demo runs are queued, never executed.
"""
from __future__ import annotations

import pytest

from admin_support import ADMIN, PASSWORD, build_app, login
from job_support import paused_runner
from webapp.store import CREDENTIALS_KEY, EXTENSION_KEY, close_repository


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request, tmp_path):
    """An empty store: memory, a new SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "postgresql":
        return request.getfixturevalue("empty_postgres")()
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'admin.db'}"


@pytest.fixture
def app(store_url):
    app = build_app(store_url)
    paused_runner(app)
    app.extensions[CREDENTIALS_KEY].create_user(name=ADMIN, password=PASSWORD, is_admin=True)
    yield app
    close_repository(app)


@pytest.fixture
def repo(app):
    return app.extensions[EXTENSION_KEY]


@pytest.fixture
def client(app):
    """A client logged in as the admin."""
    client = app.test_client()
    assert login(client).status_code == 302
    return client
