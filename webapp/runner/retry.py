"""Riding out a store that is briefly unreachable: a database restart, a failover.

The repositories raise ``RunboardError`` subclasses for answers about the session (not
found, wrong state, log full, bad input); those are final.  Anything else a store raises —
``sqlalchemy.exc.OperationalError`` when the server is gone, a disk I/O error, … — says
nothing about the session, only that the write did not happen, so the runner tries again
later with a capped exponential backoff instead of failing the job.

Trying again is safe only if the failed call stored nothing.  Every repository method is
one transaction (``repositories.base``), and an error before COMMIT leaves nothing behind.
An error *during* COMMIT — the connection lost after the server committed — is ambiguous:
a log batch may then be stored twice, or ``start`` answer "already running".  The
runner's own retries accept that case; the HTTP client closes it with an
``Idempotency-Key`` on every request (see ``runboard.reporting``).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from repositories.errors import RunboardError
from runboard.backoff import Backoff

log = logging.getLogger("runboard.runner")
T = TypeVar("T")


def describe(exc: BaseException) -> str:
    """The error's type and first line, for a log line (the rest may carry a statement)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def is_store_failure(exc: BaseException) -> bool:
    """True for an error that says the store could not be reached, not that it refused."""
    return isinstance(exc, Exception) and not isinstance(exc, RunboardError)


def retrying(call: Callable[[], T], *, deadline: float, what: str) -> T:
    """``call()``, tried again after store failures until ``deadline`` (``time.monotonic``).

    Always makes one attempt; a domain error goes straight to the caller, and so does the
    last store failure once the next attempt would start after the deadline."""
    backoff = Backoff()
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            delay = backoff.failed()
            if time.monotonic() + delay > deadline:
                raise
            if backoff.failures == 1:
                log.warning("store unreachable while trying to %s (%s); retrying", what, describe(exc))
            time.sleep(delay)
        else:
            if backoff.succeeded():
                log.info("store reachable again: %s done", what)
            return result
