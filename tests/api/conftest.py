"""API fixtures: an app per store, and callers holding every kind of credential."""
from __future__ import annotations

import pytest

from api_support import ADMIN_TOKEN, USER_KIND, Caller, Callers
from webapp import create_app
from job_support import idle_kind, paused_runner
from webapp.store import CREDENTIALS_KEY, close_repository


@pytest.fixture(params=["memory", "sqlite"])
def app(request, tmp_path):
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'api.db'}"
    app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off",
                      "RUNBOARD_ADMIN_TOKEN": ADMIN_TOKEN, "TESTING": True})
    if request.param != "memory":
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

