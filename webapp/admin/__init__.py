"""The server-rendered admin panel (SPEC §6) under /admin.

One blueprint; each area is a small module of thin routes (parse, call the repository or
the runner, render).  Every page needs an admin login (``auth.py``); every form carries a
CSRF token (Flask-WTF), while the bearer-token JSON API is exempt.
"""
from __future__ import annotations

from flask import Blueprint, Flask, redirect, url_for

from ..security import PANEL

bp = Blueprint("admin", __name__, url_prefix=PANEL)


def install_admin(app: Flask) -> None:
    """Bind CSRF protection and the login throttle, register the pages, and on memory://
    create the first admin from RUNBOARD_ADMIN_PASSWORD (its users live in this process)."""
    from ..api import bp as api_bp
    from . import auth, detail, downloads, history, overview, usage, workers  # noqa: F401  (routes register on import)
    from .bootstrap import create_memory_admin
    from .extensions import csrf, install_throttle
    from .formatting import register_filters

    # A token lives as long as the login session: a page kept open (its forms refreshed
    # with 304s) must not fail an hour later.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(app)
    csrf.exempt(api_bp)
    install_throttle(app)
    register_filters(app)
    app.context_processor(lambda: {"admin": auth.current_admin()})
    app.register_blueprint(bp)
    app.add_url_rule("/", "root", root)
    create_memory_admin(app)


def root():
    """Someone opening the server's address is a person looking for the panel (clients
    use /api/v1 and /healthz), so the root sends them there rather than answer a JSON 404."""
    return redirect(url_for("admin.overview"))
