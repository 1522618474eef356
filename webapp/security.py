"""Security headers on every response and hardened session-cookie defaults."""
from __future__ import annotations

from flask import Flask

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def install_security(app: Flask, *, secure_cookies: bool) -> None:
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=secure_cookies)

    common = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
              ("Referrer-Policy", "no-referrer"), ("Cross-Origin-Opener-Policy", "same-origin")]
    if secure_cookies:
        common.append(("Strict-Transport-Security", "max-age=31536000"))
    for_pages = common + [("Content-Security-Policy", PAGE_CSP)]
    for_data = common + [("Content-Security-Policy", API_CSP)]

    @app.after_request
    def security_headers(response):
        """Added on every response in one call (this runs on every API request)."""
        if "Content-Security-Policy" not in response.headers:
            response.headers.extend(for_pages if response.mimetype == "text/html" else for_data)
        return response
