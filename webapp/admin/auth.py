"""Admin login and logout; every other panel route needs a logged-in admin.

The login is kept in Flask's signed session cookie (HttpOnly, SameSite=Lax, Secure with
RUNBOARD_SECURE_COOKIES).  The cookie is cleared on login (no fixation) and on logout.
Bad credentials get one generic message, and POST /admin/login is throttled per address.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for

from ..store import get_credentials
from . import bp
from .extensions import throttle_login
from .forms import LoginForm, LogoutForm

SESSION_KEY = "admin"
OPEN_ENDPOINTS = {"admin.login"}
BAD_CREDENTIALS = "Invalid name or password."


def current_admin() -> str | None:
    return session.get(SESSION_KEY)


@bp.before_request
def require_admin():
    """Closed by default: with no admin yet, explain how to create one; else ask to log in."""
    if current_admin() is not None or request.endpoint in OPEN_ENDPOINTS:
        return None
    if not get_credentials().has_admin():
        return _setup_page()
    return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in; the form's POST is rate limited and answers bad credentials generically."""
    if not get_credentials().has_admin():
        return _setup_page()
    form = LoginForm(next=request.args.get("next", ""))
    error = None
    if request.method == "POST":
        throttle_login()
        if form.validate_on_submit():
            user = get_credentials().verify_user(form.name.data, form.password.data)
            if user is not None and user.is_admin:
                session.clear()
                session[SESSION_KEY] = user.name
                return redirect(_safe_next(form.next.data))
        error = BAD_CREDENTIALS
    return render_template("admin/login.html", form=form, error=error), 200 if error is None else 401


@bp.post("/logout")
def logout():
    LogoutForm().validate_on_submit()     # CSRFProtect has already refused a bad token
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))


def _setup_page():
    memory = current_app.config["RUNBOARD"].store == "memory"
    return render_template("admin/setup.html", memory=memory), 503


def _safe_next(target: str | None) -> str:
    """Only a path inside the panel: never another host (open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/admin") and "\\" not in target:
            return target
    return url_for("admin.overview")
