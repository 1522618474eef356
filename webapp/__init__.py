"""Runboard's Flask application factory."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from repositories.sql.engine import engine_options

from .cli import register_cli
from .errors import register_error_handlers
from .extensions import db, migrate
from .jsonio import OrjsonProvider
from .security import install_security
from .settings import load_settings
from .runner import KINDS_KEY, RUNNER_KEY, install_runner
from .scheduler import Scheduler
from .store import CREDENTIALS_KEY, EXTENSION_KEY, build_stores, sqlalchemy_url

SCHEDULER_KEY = "runboard.scheduler"
ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = str(ROOT / "migrations")
# Spelled out (it is Flask's own default for a package run from a checkout) so that
# gunicorn's start-up check in the master resolves relative SQLite paths the same way.
INSTANCE_PATH = str(ROOT / "instance")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app.  ``config`` overrides environment settings (RUNBOARD_* names) and
    Flask config keys alike, which is how tests configure it.

    Raises ConfigurationError (one line, naming the variable) for bad settings or an
    unreachable database.
    """
    config = dict(config or {})
    settings = load_settings(os.environ, config)
    app = Flask(__name__, instance_path=INSTANCE_PATH, instance_relative_config=True,
                template_folder="../templates", static_folder="../static")
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        SECRET_KEY=settings.secret_key or _instance_secret(app.instance_path),
        # memory:// never touches Flask-SQLAlchemy; its URI only has to be valid.
        SQLALCHEMY_DATABASE_URI="sqlite://" if settings.store == "memory"
        else sqlalchemy_url(settings, app.instance_path),
        SQLALCHEMY_ENGINE_OPTIONS={} if settings.store == "memory" else engine_options(settings.database_url),
        MAX_CONTENT_LENGTH=1024 * 1024,
        PERMANENT_SESSION_LIFETIME=settings.panel_lifetime,
    )
    app.config.update({k: v for k, v in config.items() if not k.startswith("RUNBOARD_")})
    app.config["RUNBOARD"] = settings
    install_security(app, secure_cookies=settings.secure_cookies)
    if settings.store != "memory":
        db.init_app(app)
        migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    app.extensions[EXTENSION_KEY], app.extensions[CREDENTIALS_KEY] = build_stores(app, settings)
    install_runner(app, app.extensions[EXTENSION_KEY], settings, kinds=registered_kinds(settings))
    app.extensions[SCHEDULER_KEY] = Scheduler(app.extensions[EXTENSION_KEY], settings,
                                              holder=app.extensions[RUNNER_KEY].identity.worker_id,
                                              kinds=tuple(app.extensions[KINDS_KEY].names()))
    register_error_handlers(app)
    register_cli(app)
    app.json = OrjsonProvider(app)

    from . import health
    from .admin import install_admin
    from .api import bp as api_bp
    app.register_blueprint(health.bp)
    app.register_blueprint(api_bp)
    install_admin(app)
    if settings.trusted_proxies:
        # The client's address, scheme and host as the proxies in front saw them: the login
        # throttle counts per address, and secure cookies need the scheme.  Only as many
        # hops as are configured are believed, so a client cannot forge its address.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


def start_background_work(app: Flask) -> None:
    """The runner's pool and monitor, and the scheduler unless RUNBOARD_SCHEDULER=off.
    Called once per serving process (gunicorn's worker hook); CLI commands and tests
    never start them unless they ask."""
    app.extensions[RUNNER_KEY].start()
    if app.config["RUNBOARD"].scheduler == "on":
        app.extensions[SCHEDULER_KEY].start()


def registered_kinds(settings) -> tuple:
    """The built-in kinds, then RUNBOARD_KINDS' and the ``runboard.kinds`` entry points'
    (SPEC §5); the one set the web app, the CLI and every worker register.
    ConfigurationError (one line naming the kind's source) when one cannot be loaded."""
    from .jobs import BUILTIN_KINDS
    from .runner.kinds import load_kinds

    return BUILTIN_KINDS + load_kinds(settings.kinds, BUILTIN_KINDS)


def _instance_secret(instance_path: str) -> str:
    """A generated key kept in instance/ so restarts and several workers agree on it.

    The key is written to a private temporary file first and then hard-linked into place:
    the link either appears complete or not at all, so a gunicorn worker racing another
    can never read a half-written (empty) key.
    """
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=instance_path, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            os.link(temporary, path)
        except FileExistsError:
            pass                              # another process won the race; use its key
        finally:
            os.unlink(temporary)
    return path.read_text().strip()
