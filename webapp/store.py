"""Builds the configured repository and hangs it on the app (never on a module global)."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from repositories import SessionRepository
from repositories.credentials import CredentialStore, MemoryCredentialStore
from repositories.errors import ConfigurationError
from repositories.memory import MemorySessionRepository
from repositories.sql import SqlSessionRepository
from repositories.sql.credentials import SqlCredentialStore
from repositories.sql.engine import prepare_engine

from .extensions import db
from .settings import Settings

EXTENSION_KEY = "runboard"
CREDENTIALS_KEY = "runboard.credentials"


def sqlalchemy_url(settings: Settings, instance_path: str) -> str:
    """The URL the engine connects to: ``postgresql://`` gets the psycopg 3 driver, and a
    relative SQLite path lives in the instance folder — resolved here, once, so the app and
    gunicorn's start-up check (``webapp.preflight``) open the very same file."""
    url = settings.database_url
    if url.startswith("postgresql://"):
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        parsed = make_url(url)
        path = Path(instance_path, parsed.database)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def build_stores(app: Flask, settings: Settings) -> tuple[SessionRepository, CredentialStore]:
    """The session repository and the credential store for the configured database."""
    if settings.store == "memory":
        return MemorySessionRepository(max_log_entries=settings.max_log_entries), MemoryCredentialStore()
    with app.app_context():
        # Listeners first: the pool keeps the connection check_reachable opens, and a SQLite
        # connection made without them would lack WAL, busy timeout and our BEGIN handling.
        engine = prepare_engine(db.engine)
    check_reachable(engine)
    repository = SqlSessionRepository(engine, max_log_entries=settings.max_log_entries)
    return repository, SqlCredentialStore(repository.transactions)


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


def close_repository(app: Flask, *, job_timeout: float = 20.0) -> None:
    """Stop the scheduler and the runner's jobs (giving them ``job_timeout`` seconds to
    honour the stop), then release the store's connections: tests, CLI one-shots and
    gunicorn's graceful worker exit all end here."""
    from . import SCHEDULER_KEY
    from .runner import RUNNER_KEY

    if SCHEDULER_KEY in app.extensions:
        app.extensions[SCHEDULER_KEY].shutdown()
    if RUNNER_KEY in app.extensions:
        app.extensions[RUNNER_KEY].shutdown(timeout=job_timeout)
    app.extensions[EXTENSION_KEY].close()
    if "sqlalchemy" in app.extensions:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
