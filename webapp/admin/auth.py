"""Admin login and logout; every other panel route needs a logged-in admin.

A login is a panel session kept in the credential store; Flask's signed cookie (HttpOnly,
SameSite=Lax, Secure with RUNBOARD_SECURE_COOKIES) carries only its random secret.  So
logout, a password change, ``RUNBOARD_PANEL_IDLE_TIMEOUT`` without a request and
``RUNBOARD_PANEL_LIFETIME`` after login each end it on the server: a copied cookie stops
working for every worker at once.  The cookie is cleared on login (no fixation) and on
logout.  Bad credentials get one generic message and cost the same time whether or not the
name exists; POST /admin/login is throttled per address across all workers.
"""
from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from flask import current_app, flash, g, redirect, render_template, request, session, url_for

from repositories.credentials import User

from ..store import get_credentials
from . import bp
from .extensions import throttle_login
from .forms import LoginForm, LogoutForm

SESSION_KEY = "panel"
OPEN_ENDPOINTS = {"admin.login"}
BAD_CREDENTIALS = "Invalid name or password."
BAD_NEXT = "The page to return to (next) holds control characters."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def current_user() -> User | None:
    """The logged-in user of this request's panel session (looked up once per request)."""
    if "panel_user" not in g:
        secret = session.get(SESSION_KEY)
        idle = current_app.config["RUNBOARD"].panel_idle_timeout
        g.panel_user = get_credentials().find_panel_session(secret, idle=idle) if isinstance(secret, str) else None
    return g.panel_user


def current_admin() -> str | None:
    user = current_user()
    return user.name if user is not None and user.is_admin else None


@bp.before_request
def require_admin():
    """Closed by default: with no admin yet, explain how to create one; else ask to log in."""
    if request.endpoint in OPEN_ENDPOINTS or current_admin() is not None:
        return None
    if not get_credentials().has_admin():
        return _setup_page()
    if SESSION_KEY in session:
        session.clear()          # an ended panel session: drop the dead cookie
    return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in; the form's POST is rate limited and answers bad credentials generically."""
    if not get_credentials().has_admin():
        return _setup_page()
    asked = request.args.get("next", "")
    form = LoginForm(next=asked if panel_path(asked) else "")
    if request.method != "POST":
        return render_template("admin/login.html", form=form, error=None)
    throttle_login()
    if _CONTROL.search(form.next.data or ""):
        # Malformed, not merely elsewhere: refused before any login, so no cookie is set.
        form.next.data = ""
        return render_template("admin/login.html", form=form, error=BAD_NEXT), 400
    if form.validate_on_submit():
        user = get_credentials().verify_user(form.name.data, form.password.data)
        if user is not None and user.is_admin:
            settings = current_app.config["RUNBOARD"]
            session.clear()
            session.permanent = True             # the browser drops it at the absolute lifetime too
            session[SESSION_KEY] = get_credentials().open_panel_session(user.name, lifetime=settings.panel_lifetime)
            # A path outside the panel is not followed (no open redirect), the login stands.
            return redirect(form.next.data if panel_path(form.next.data) else url_for("admin.overview"))
    return render_template("admin/login.html", form=form, error=BAD_CREDENTIALS), 401


@bp.post("/logout")
def logout():
    LogoutForm().validate_on_submit()     # CSRFProtect has already refused a bad token
    secret = session.get(SESSION_KEY)
    if isinstance(secret, str):
        get_credentials().close_panel_session(secret)
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))


def _setup_page():
    memory = current_app.config["RUNBOARD"].store == "memory"
    return render_template("admin/setup.html", memory=memory), 503


def panel_path(target: str | None) -> bool:
    """True for a same-host path inside the panel, judged as a browser would resolve it:
    no scheme or host, no control characters (a header split), no backslash, and no ``.``,
    ``..`` or empty segment, also once percent-decoded (``/admin/%2e%2e//evil`` leaves it)."""
    if not target or _CONTROL.search(target):
        return False
    parts = urlsplit(target)
    path = unquote(parts.path)
    if parts.scheme or parts.netloc or "\\" in path or _CONTROL.search(path):
        return False
    segments = path.split("/")[1:]
    if path[:1] != "/" or not segments or segments[0] != "admin":
        return False
    return all(s not in (".", "..") for s in segments) and "" not in segments[1:-1]
