"""Servers the probe's findings are re-run against: gunicorn with the project's config
(two workers, so anything kept per process shows), and one in-process server on a fake
clock for panel-session lifetimes.  Both on SQLite files of their own."""
from __future__ import annotations

import pytest

from security_support import Panel, gunicorn


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two workers; the login limit raised so only the throttle's own test meets it."""
    with gunicorn(tmp_path_factory, "security", RUNBOARD_LOGIN_LIMIT="1000/minute").serving() as server:
        yield server


@pytest.fixture
def panel(server):
    browser = Panel(server.base_url)
    yield browser
    browser.close()
