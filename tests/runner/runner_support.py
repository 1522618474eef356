"""Helpers shared by the runner tests (imported by name: tests are not a package)."""
from __future__ import annotations

import time

from repositories.merge import merge_patch, merge_progress
from webapp import create_app
from webapp.runner import RUNNER_KEY

TOKEN = "runner-test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(url: str, **settings):
    app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off", "RUNBOARD_ADMIN_TOKEN": TOKEN,
                      "TESTING": True, **settings})
    if url != "memory://":
        app.extensions["runboard"].create_schema()
    return app


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


def send_patch(context, call: str, patch: dict, meta: dict, progress: dict) -> tuple[dict, dict]:
    """Send a ``meta`` or ``progress`` patch through ``context``; the (meta, progress) the
    store must end with, by applying each patch in turn (RFC 7396, percent derived)."""
    if call == "meta":
        context.meta(**patch)
        return merge_patch(meta, patch), progress
    context.progress(**patch)
    return meta, merge_progress(progress, patch)
