"""Security headers on every response, hardened session-cookie defaults, and the session
cookie kept to the admin panel.

Every answer but the static files is ``Cache-Control: no-store``: pages and API answers
carry sessions, logs and CSRF tokens that no browser or shared cache should keep (the
live refresh revalidates with its own ``If-None-Match``, not the browser cache)."""
from __future__ import annotations

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import LimitedStream

#: Bodies up to this size are read to their end before an answer that did not need them
#: (above nginx's 11 MiB ``client_max_body_size``, so every body nginx forwards).
DRAIN_LIMIT = 16 * 1024 * 1024

#: The admin panel's URL prefix (its blueprint's, ``webapp/admin``): the session cookie's only users.
PANEL = "/admin"

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def install_security(app: Flask, *, secure_cookies: bool) -> None:
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=secure_cookies)
    app.session_interface = PanelSessions()

    common = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
              ("Referrer-Policy", "no-referrer"), ("Cross-Origin-Opener-Policy", "same-origin")]
    if secure_cookies:
        common.append(("Strict-Transport-Security", "max-age=31536000"))
    for_pages = common + [("Content-Security-Policy", PAGE_CSP)]
    for_data = common + [("Content-Security-Policy", API_CSP)]

    app.wsgi_app = DrainUnreadBody(app.wsgi_app)

    @app.after_request
    def security_headers(response):
        """Added on every response in one call (this runs on every API request)."""
        if "Content-Security-Policy" not in response.headers:
            response.headers.extend(for_pages if response.mimetype == "text/html" else for_data)
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response


class PanelSessions(SecureCookieSessionInterface):
    """The signed session cookie belongs to the admin panel (its login, CSRF token and
    flashes).  Every other request — the bearer-token JSON API, ``/healthz`` — neither
    reads nor sets it: they get Flask's null session, which refuses writes, and pay
    nothing for a cookie they never use (docs/benchmarks.md)."""

    def open_session(self, app, request):
        if request.path == PANEL or request.path.startswith(PANEL + "/"):
            return super().open_session(app, request)
        return self.make_null_session(app)


class DrainUnreadBody:
    """WSGI middleware: the rest of the request body is read before the answer goes out.

    A request refused without reading its body (401 for a bad token, 413 for a declared
    size over the limit) would otherwise be answered on a connection that still holds
    unread bytes; gunicorn then closes it, the kernel sends a reset, and a proxy in front
    (nginx) often sees the reset before the answer and turns it into a 502.  Only bodies
    with a declared length up to ``DRAIN_LIMIT`` are read; larger ones never reach
    gunicorn behind the shipped nginx configuration (docs/nginx/runboard.conf)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if not 0 < length <= DRAIN_LIMIT:
            return self.app(environ, start_response)
        body = environ["wsgi.input"] = LimitedStream(environ["wsgi.input"], length)
        result = self.app(environ, start_response)
        try:
            body.exhaust()
        except ClientDisconnected:          # the client sent less than it declared and left
            pass
        return result
