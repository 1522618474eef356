"""The first admin: created once with a password printed once, or RUNBOARD_ADMIN_PASSWORD."""
from __future__ import annotations

import re
from pathlib import Path

from admin_support import build_app, login
from repositories.credentials import MemoryCredentialStore
from repositories.sql import SqlSessionRepository, Transactions
from repositories.sql.credentials import SqlCredentialStore
from repositories.sql.engine import make_engine
from webapp.admin.bootstrap import ensure_first_admin
from webapp.settings import load_settings
from webapp.store import CREDENTIALS_KEY, close_repository


def test_a_random_password_is_printed_once_and_the_admin_created_once():
    credentials, printed = MemoryCredentialStore(), []
    settings = load_settings({}, {"RUNBOARD_DATABASE_URL": "memory://"})
    assert ensure_first_admin(settings, credentials=credentials, echo=printed.append) is True
    [line] = printed
    password = re.search(r"with the password (\S+) ", line).group(1)
    assert credentials.verify_user("admin", password).is_admin
    assert ensure_first_admin(settings, credentials=credentials, echo=printed.append) is False
    assert len(printed) == 1


def test_the_configured_password_is_used_and_never_printed():
    credentials, printed = MemoryCredentialStore(), []
    settings = load_settings({"RUNBOARD_ADMIN_PASSWORD": "chosen-password"}, {"RUNBOARD_DATABASE_URL": "memory://"})
    ensure_first_admin(settings, credentials=credentials, echo=printed.append)
    assert credentials.verify_user("admin", "chosen-password") is not None
    assert "chosen-password" not in printed[0] and "RUNBOARD_ADMIN_PASSWORD" in printed[0]


def test_an_existing_admin_means_nothing_is_created():
    credentials, printed = MemoryCredentialStore(), []
    credentials.create_user(name="root", password="root-password", is_admin=True)
    settings = load_settings({}, {"RUNBOARD_DATABASE_URL": "memory://"})
    assert ensure_first_admin(settings, credentials=credentials, echo=printed.append) is False
    assert printed == []


def test_on_a_sql_store_it_opens_the_configured_database_itself(tmp_path):
    url = f"sqlite:///{tmp_path / 'boot.db'}"
    SqlSessionRepository.from_url(url).create_schema()
    settings, printed = load_settings({}, {"RUNBOARD_DATABASE_URL": url}), []
    assert ensure_first_admin(settings, echo=printed.append) is True
    assert ensure_first_admin(settings, echo=printed.append) is False
    engine = make_engine(url)
    try:
        assert SqlCredentialStore(Transactions(engine)).has_admin()
    finally:
        engine.dispose()


def test_the_master_does_nothing_for_the_memory_store():
    assert ensure_first_admin(load_settings({}, {"RUNBOARD_DATABASE_URL": "memory://"}), echo=print) is False


def test_apps_never_create_an_admin_on_sql_stores(tmp_path):
    app = build_app(f"sqlite:///{tmp_path / 'x.db'}", RUNBOARD_ADMIN_PASSWORD="chosen-password")
    try:
        assert not app.extensions[CREDENTIALS_KEY].has_admin()
    finally:
        close_repository(app)


def test_a_memory_app_with_a_configured_password_lets_the_admin_in():
    app = build_app("memory://", RUNBOARD_ADMIN_PASSWORD="chosen-password")
    try:
        assert login(app.test_client(), "admin", "chosen-password").status_code == 302
    finally:
        close_repository(app)


def test_gunicorn_calls_it_in_the_masters_when_ready_hook():
    source = (Path(__file__).parents[2] / "gunicorn_config.py").read_text()
    assert "def when_ready(server):" in source and "ensure_first_admin(_settings)" in source
