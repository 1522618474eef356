"""Builds the configured repository and hangs it on the app (never on a module global)."""
from __future__ import annotations

from flask import Flask, current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from repositories import SessionRepository
from repositories.credentials import CredentialStore, MemoryCredentialStore
from repositories.errors import ConfigurationError
from repositories.memory import MemorySessionRepository
from repositories.sql import SqlSessionRepository
from repositories.sql.credentials import SqlCredentialStore

from .extensions import db
from .settings import Settings

EXTENSION_KEY = "runboard"
CREDENTIALS_KEY = "runboard.credentials"


def build_stores(app: Flask, settings: Settings) -> tuple[SessionRepository, CredentialStore]:
    """The session repository and the credential store for the configured database."""
    if settings.store == "memory":
        return MemorySessionRepository(max_log_entries=settings.max_log_entries), MemoryCredentialStore()
    with app.app_context():
        engine = db.engine
        repository = SqlSessionRepository(engine, max_log_entries=settings.max_log_entries)
        check_reachable(engine)
    return repository, SqlCredentialStore(engine)


def check_reachable(engine) -> None:
    """Fail start-up with one line naming the variable when the database cannot be reached."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        raise ConfigurationError(f"RUNBOARD_DATABASE_URL: database unreachable ({reason})") from None


def get_repository() -> SessionRepository:
    """The repository of the app handling the current request or CLI command."""
    return current_app.extensions[EXTENSION_KEY]


def get_credentials() -> CredentialStore:
    return current_app.extensions[CREDENTIALS_KEY]


def close_repository(app: Flask) -> None:
    """Release the store's connections (tests, CLI one-shots, graceful shutdown)."""
    app.extensions[EXTENSION_KEY].close()
    if "sqlalchemy" in app.extensions:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
