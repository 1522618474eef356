"""Admin panel fixtures: an app per store with one admin login, and a logged-in client.

CSRF is off here (WTF_CSRF_ENABLED false) so page tests post plain forms; test_csrf.py
builds its apps with it on.  The runner is paused: demo runs are queued, never executed.
"""
from __future__ import annotations

import contextlib
import re
from datetime import datetime

import pytest

from job_support import paused_runner
from webapp import create_app
from webapp.store import CREDENTIALS_KEY, EXTENSION_KEY, close_repository

ADMIN, PASSWORD = "root", "root-password"
BASE = {"RUNBOARD_SCHEDULER": "off", "TESTING": True, "WTF_CSRF_ENABLED": False}


def build_app(url: str, **config):
    app = create_app({"RUNBOARD_DATABASE_URL": url, **BASE, **config})
    if not url.startswith("memory"):
        app.extensions[EXTENSION_KEY].create_schema()
    return app


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request, tmp_path):
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


def login(client, name=ADMIN, password=PASSWORD):
    return client.post("/admin/login", data={"name": name, "password": password})


@pytest.fixture
def client(app):
    """A client logged in as the admin."""
    client = app.test_client()
    assert login(client).status_code == 302
    return client


@contextlib.contextmanager
def clock_at(repo, moment: datetime):
    """Writes made inside the block are stamped ``moment`` (the store's clock, moved)."""
    original = repo._clock
    repo._clock = lambda: moment
    try:
        yield
    finally:
        repo._clock = original


def text(response) -> str:
    """The page's text with tags and whitespace runs collapsed, for phrase assertions."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))
