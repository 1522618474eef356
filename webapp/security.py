"""Security headers on every response and hardened session-cookie defaults."""
from __future__ import annotations

from flask import Flask

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def install_security(app: Flask, *, secure_cookies: bool) -> None:
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=secure_cookies)

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        is_html = response.mimetype == "text/html"
        headers.setdefault("Content-Security-Policy", PAGE_CSP if is_html else API_CSP)
        if secure_cookies:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
