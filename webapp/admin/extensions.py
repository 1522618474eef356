"""CSRF protection and the login throttle.

The throttle is a moving window per client address from the ``limits`` library (the
engine under Flask-Limiter), kept on the app rather than on a module-level object so that
every app — and every test — counts its own attempts.  Behind a proxy, wrap the app in
werkzeug's ProxyFix so ``remote_addr`` is the client's.
"""
from __future__ import annotations

import threading
import time

from flask import Flask, current_app, request
from flask_wtf.csrf import CSRFProtect
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

csrf = CSRFProtect()
THROTTLE_KEY = "runboard.login_throttle"
LOGIN_LIMIT = "10/minute"


class LoginThrottle:
    def __init__(self, limit: str = LOGIN_LIMIT):
        self.item = parse(limit)
        self._lock = threading.Lock()
        self._limiter: MovingWindowRateLimiter | None = None

    @property
    def limiter(self) -> MovingWindowRateLimiter:
        """Made on the first login attempt: the storage starts an expiry timer thread, which
        CLI commands and most apps never need."""
        with self._lock:
            if self._limiter is None:
                self._limiter = MovingWindowRateLimiter(MemoryStorage())
            return self._limiter

    def hit(self, client: str) -> None:
        """Count one attempt; TooManyRequests (429 with Retry-After) once over the limit."""
        limiter = self.limiter
        if not limiter.hit(self.item, "login", client):
            reset = limiter.get_window_stats(self.item, "login", client).reset_time
            retry = TooManyRequests("too many login attempts; wait a minute and try again")
            retry.retry_after = max(int(reset - time.time()) + 1, 1)
            raise retry


def install_throttle(app: Flask) -> None:
    app.extensions[THROTTLE_KEY] = LoginThrottle(app.config.get("ADMIN_LOGIN_LIMIT", LOGIN_LIMIT))


def throttle_login() -> None:
    current_app.extensions[THROTTLE_KEY].hit(request.remote_addr or "unknown")
