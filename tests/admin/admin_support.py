"""Helpers shared by the admin panel tests (imported by name: tests are not a package)."""
from __future__ import annotations

import contextlib
import re
from datetime import datetime

from webapp import create_app
from webapp.store import EXTENSION_KEY

ADMIN, PASSWORD = "root", "root-password"
BASE = {"RUNBOARD_SCHEDULER": "off", "TESTING": True, "WTF_CSRF_ENABLED": False}


def build_app(url: str, **config):
    app = create_app({"RUNBOARD_DATABASE_URL": url, **BASE, **config})
    if not url.startswith("memory"):
        app.extensions[EXTENSION_KEY].create_schema()
    return app


def login(client, name=ADMIN, password=PASSWORD):
    return client.post("/admin/login", data={"name": name, "password": password})


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
