"""CSRF protection and the login throttle.

The throttle counts attempts per client address in the credential store, so every
gunicorn worker (and every host on one database) shares one count: a limit counted per
process would let an address try ``workers × limit`` times.  Behind a proxy, set
``RUNBOARD_TRUSTED_PROXIES`` so ``remote_addr`` is the client's, not the proxy's.
"""
from __future__ import annotations

import math
from datetime import timedelta

from flask import Flask, current_app, request
from flask_wtf.csrf import CSRFProtect
from limits import parse
from werkzeug.exceptions import TooManyRequests

from ..store import get_credentials

csrf = CSRFProtect()
THROTTLE_KEY = "runboard.login_throttle"
#: The column the address is counted under; IPv6 text is at most 45 characters.
MAX_CLIENT = 64


def install_throttle(app: Flask) -> None:
    """Read ``RUNBOARD_LOGIN_LIMIT`` ("10/minute", the ``limits`` notation) once."""
    item = parse(app.config["RUNBOARD"].login_limit)
    app.extensions[THROTTLE_KEY] = (item.amount, item.get_expiry())


def throttle_login() -> None:
    """Count one attempt; TooManyRequests (429 with Retry-After) once over the limit."""
    limit, seconds = current_app.extensions[THROTTLE_KEY]
    wait = get_credentials().count_login_attempt((request.remote_addr or "unknown")[:MAX_CLIENT], limit=limit,
                                                 window=timedelta(seconds=seconds))
    if wait is not None:
        retry = TooManyRequests("too many login attempts; wait a minute and try again")
        retry.retry_after = max(math.ceil(wait), 1)
        raise retry
