"""The first admin login, so a newcomer can sign in straight away.

``ensure_first_admin`` runs once in gunicorn's master (``when_ready`` in
gunicorn_config.py), never in tests' apps or CLI commands: with no admin yet it creates
one named ``admin`` with RUNBOARD_ADMIN_PASSWORD, or with a random password printed once.
On memory:// the users live in the serving process, so ``create_memory_admin`` does it at
app start — and only when RUNBOARD_ADMIN_PASSWORD is set (a printed password would be lost
in every test and CLI process); otherwise the panel explains how to get in.
"""
from __future__ import annotations

import secrets
from typing import Callable

from flask import Flask

from repositories.credentials import CredentialStore
from repositories.errors import ValidationError

FIRST_ADMIN = "admin"


def ensure_first_admin(settings, *, credentials: CredentialStore | None = None,
                       echo: Callable[[str], None] = print) -> bool:
    """Create the first admin when none exists; True when one was created here.
    ``credentials`` defaults to the SQL store of ``settings`` (opened and closed here)."""
    if settings.store == "memory" and credentials is None:
        return False                      # the master's memory is not the worker's
    engine = None
    if credentials is None:
        credentials, engine = _sql_credentials(settings)
    try:
        if credentials.has_admin():
            return False
        password = settings.admin_password or secrets.token_urlsafe(12)
        try:
            credentials.create_user(name=FIRST_ADMIN, password=password, is_admin=True)
        except ValidationError:
            return False                  # another host created it first (or "admin" is a plain user)
    finally:
        if engine is not None:
            engine.dispose()
    if settings.admin_password:
        echo(f"runboard: created the admin login {FIRST_ADMIN!r} with the password in RUNBOARD_ADMIN_PASSWORD")
    else:
        echo(f"runboard: created the admin login {FIRST_ADMIN!r} with the password {password} "
             "(shown only now; sign in at /admin/login)")
    return True


def create_memory_admin(app: Flask) -> None:
    settings = app.config["RUNBOARD"]
    if settings.store == "memory" and settings.admin_password:
        from ..store import CREDENTIALS_KEY

        ensure_first_admin(settings, credentials=app.extensions[CREDENTIALS_KEY], echo=app.logger.info)


def _sql_credentials(settings):
    from repositories.sql import Transactions, make_engine
    from repositories.sql.credentials import SqlCredentialStore

    from .. import INSTANCE_PATH
    from ..store import sqlalchemy_url

    engine = make_engine(sqlalchemy_url(settings, INSTANCE_PATH))
    return SqlCredentialStore(Transactions(engine)), engine
