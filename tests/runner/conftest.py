"""Runner fixtures: an app per store whose runner runs test kinds for real."""
from __future__ import annotations

import time

import pytest

from webapp import create_app
from webapp.runner import RUNNER_KEY
from webapp.store import close_repository

TOKEN = "runner-test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(url: str, **settings):
    app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off", "RUNBOARD_ADMIN_TOKEN": TOKEN,
                      "TESTING": True, **settings})
    if url != "memory://":
        app.extensions["runboard"].create_schema()
    return app


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runner.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def fresh_postgres_url(postgres_url):
    """The run's PostgreSQL database, emptied: runner tests count sessions."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        tables = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        for table in tables:
            if table != "alembic_version":
                connection.execute(text(f'TRUNCATE "{table}" CASCADE'))
    engine.dispose()
    return postgres_url


@pytest.fixture
def app_factory(store_url):
    apps = []

    def build(**settings):
        app = make_app(store_url, **settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_repository(app)


@pytest.fixture
def app(app_factory):
    return app_factory(RUNBOARD_STOP_GRACE="30s")


def runner_of(app):
    return app.extensions[RUNNER_KEY]


def wait_for(predicate, timeout=10.0, interval=0.01):
    """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def session_of(client, session_id):
    response = client.get(f"/api/v1/sessions/{session_id}", headers=AUTH)
    assert response.status_code == 200, response.json
    return response.json


def finished(client, session_id):
    session = session_of(client, session_id)
    return session if session["state"] in ("completed", "failed", "stopped") else None
