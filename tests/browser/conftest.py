"""Real-browser fixtures: ONE gunicorn server and ONE headless Chromium for tests/browser.

The server is the production command (``tests/gunicorn_support.Server``) on a SQLite file,
1 worker × 4 threads, scheduler off; ``RUNBOARD_ADMIN_PASSWORD`` makes the first-admin
bootstrap in ``gunicorn_config.when_ready`` create the login.  Chromium is Debian's
(``apt-get install chromium``), driven by the ``playwright`` package; ``playwright install``
is never needed.  Without it the tests skip locally and fail under ``CI=true``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser_support import ADMIN, CHROMIUM, CHROMIUM_ARGS, PASSWORD, VIEWPORT, sign_in
from gunicorn_support import Server


def _require_chromium():
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install -r requirements.txt)"
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests need Chromium under CI=true: {problem}")
    pytest.skip(f"browser tests skipped: {problem}")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One gunicorn for every browser test (module-level servers would each cost a boot)."""
    _require_chromium()
    workdir = tmp_path_factory.mktemp("browser-server")
    server = Server(f"sqlite:///{workdir / 'runboard.db'}", workdir, "browser", workers=1, threads=4,
                    env={"RUNBOARD_ADMIN_PASSWORD": PASSWORD, "RUNBOARD_SECRET_KEY": "browser-tests-secret-key-0123",
                         "RUNBOARD_STOP_GRACE": "5s"})
    server.migrate()
    with server.serving():
        yield server


@pytest.fixture(scope="session")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser, server):
    """A fresh browser profile (cookies, localStorage) per test."""
    ctx = browser.new_context(base_url=server.base_url, viewport=VIEWPORT, accept_downloads=True)
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture
def admin_page(page):
    """A page signed in as the bootstrap admin, on the overview."""
    sign_in(page, ADMIN, PASSWORD)
    return page


@pytest.fixture(scope="session")
def admin_state(browser, server):
    """The admin's cookies, signed in once: the login is throttled (10 a minute per address)."""
    ctx = browser.new_context(base_url=server.base_url)
    try:
        sign_in(ctx.new_page(), ADMIN, PASSWORD)
        return ctx.storage_state()
    finally:
        ctx.close()
