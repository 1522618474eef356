"""Runboard's Flask application factory."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Mapping

from flask import Flask

from repositories.sql.engine import engine_options

from .cli import register_cli
from .errors import register_error_handlers
from .extensions import db, migrate
from .jsonio import OrjsonProvider
from .security import install_security
from .settings import Settings, load_settings
from .kinds import KINDS_KEY, KindRegistry
from .store import CREDENTIALS_KEY, EXTENSION_KEY, build_stores

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app.  ``config`` overrides environment settings (RUNBOARD_* names) and
    Flask config keys alike, which is how tests configure it.

    Raises ConfigurationError (one line, naming the variable) for bad settings or an
    unreachable database.
    """
    config = dict(config or {})
    settings = load_settings(os.environ, config)
    app = Flask(__name__, instance_relative_config=True,
                template_folder="../templates", static_folder="../static")
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        SECRET_KEY=settings.secret_key or _instance_secret(app.instance_path),
        SQLALCHEMY_DATABASE_URI=_sqlalchemy_url(settings),
        SQLALCHEMY_ENGINE_OPTIONS={} if settings.store == "memory" else engine_options(settings.database_url),
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.config.update({k: v for k, v in config.items() if not k.startswith("RUNBOARD_")})
    app.config["RUNBOARD"] = settings
    install_security(app, secure_cookies=settings.secure_cookies)
    if settings.store != "memory":
        db.init_app(app)
        migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    app.extensions[EXTENSION_KEY], app.extensions[CREDENTIALS_KEY] = build_stores(app, settings)
    app.extensions[KINDS_KEY] = KindRegistry()
    register_error_handlers(app)
    register_cli(app)
    app.json = OrjsonProvider(app)

    from . import health
    from .api import bp as api_bp
    app.register_blueprint(health.bp)
    app.register_blueprint(api_bp)
    return app


def _sqlalchemy_url(settings: Settings) -> str | None:
    url = settings.database_url
    if settings.store == "memory":
        return "sqlite://"      # unused; keeps Flask-SQLAlchemy quiet if touched
    if url.startswith("postgresql://"):
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    return url


def _instance_secret(instance_path: str) -> str:
    """A generated key kept in instance/ so restarts and several workers agree on it."""
    path = Path(instance_path) / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_text().strip()
