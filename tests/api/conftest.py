"""API fixtures: an app per store (memory, SQLite, and the run's PostgreSQL database emptied
before each test), and callers holding every kind of credential."""
from __future__ import annotations

import pytest

from api_support import ADMIN_TOKEN, USER_KIND, Caller, Callers
from webapp import create_app
from job_support import idle_kind, paused_runner
from webapp.store import CREDENTIALS_KEY, close_repository


STORES = ["memory", "sqlite", "postgresql"]


def store_url(request, tmp_path) -> str:
    """An empty store of the parametrised kind; SQL ones have the schema in place."""
    if request.param == "memory":
        return "memory://"
    if request.param == "postgresql":
        return request.getfixturevalue("empty_postgres")()
    return f"sqlite:///{tmp_path / 'api.db'}"


@pytest.fixture(params=STORES)
def app(request, tmp_path):
    app = create_app({"RUNBOARD_DATABASE_URL": store_url(request, tmp_path), "RUNBOARD_SCHEDULER": "off",
                      "RUNBOARD_ADMIN_TOKEN": ADMIN_TOKEN, "TESTING": True})
    if request.param == "sqlite":
        app.extensions["runboard"].create_schema()
    paused_runner(app).kinds.register(idle_kind(USER_KIND))
    yield app
    close_repository(app)


@pytest.fixture
def callers(app) -> Callers:
    credentials = app.extensions[CREDENTIALS_KEY]
    client = app.test_client()

    def holder(role, owner):
        _, secret = credentials.create_token(role=role, owner=owner)
        return Caller(client, secret, owner)

    revoked_token, revoked_secret = credentials.create_token(role="admin", owner="gone@example.com")
    credentials.revoke_token(revoked_token.id)
    return Callers(
        anonymous=Caller(client, None), bad=Caller(client, "rb_not-a-real-token"),
        revoked=Caller(client, revoked_secret), admin=holder("admin", "root@example.com"),
        worker=holder("worker", "worker@example.com"), alice=holder("user", "alice@example.com"),
        bob=holder("user", "bob@example.com"), bootstrap=Caller(client, ADMIN_TOKEN, "admin"))

