"""What the reporting core and the transports that carry its requests say to each other.

A transport (HTTP in the client, the repository in Runboard's runner) takes an ``Op`` and
answers it, or raises one of the four outcomes below; the core decides from that alone
whether to send again, cut a batch, stop the job or give up, and ``runboard sync`` sorts a
spooled op's answer the same way.  The limits are the server's, so that nothing the core forms is
refused for its size.
"""
from __future__ import annotations

import abc
import uuid
from typing import Any, Optional

#: Entries per request: the API's own limit per batch.
LOG_BATCH = 1000
#: A log message's limit, in bytes of UTF-8.
MAX_MESSAGE_BYTES = 8 * 1024
#: Log levels the server takes.
LEVELS = ("debug", "info", "warning", "error")


class RetryLater(Exception):
    """The request was not delivered, or its answer was lost: send it again later."""

    def __init__(self, reason: str, retry_after: Optional[float] = None):
        super().__init__(reason)
        self.retry_after = retry_after


class SessionGone(Exception):
    """The session no longer takes reports: finalized elsewhere (a stop's grace, the
    heartbeat sweep, an admin) or removed."""


class LogsFull(Exception):
    """A log batch would cross the session's cap; nothing of it was stored."""

    def __init__(self, stored: int, cap: int):
        super().__init__(f"the session holds {stored} of at most {cap} log entries")
        self.stored, self.cap = stored, cap


class Rejected(Exception):
    """An answer that retrying cannot change (bad input, no permission)."""


class Op:
    """One request in the outbox: ``kind`` names the call, ``payload`` what it carries
    (entries, a report, …), ``key`` its idempotency key, fixed at creation so that every
    attempt is the same request."""

    __slots__ = ("kind", "payload", "key", "tried", "wire")

    def __init__(self, kind: str, payload: Any, key: Optional[str] = None):
        self.kind, self.payload = kind, payload
        self.key = key or uuid.uuid4().hex
        self.tried = False       # attempted once: its content may no longer change
        self.wire: Any = None    # the transport's encoded form, kept for byte-identical retries


def fit_message(message: str) -> str:
    """Cut a message (a long traceback, say) to the server's 8 KiB of UTF-8 instead of
    losing it; a message of up to 2,048 characters fits whatever they are."""
    if len(message) <= MAX_MESSAGE_BYTES // 4:
        return message
    raw = message.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_MESSAGE_BYTES:
        return message
    return raw[:MAX_MESSAGE_BYTES - 4].decode("utf-8", "ignore") + " …"


class Transport(abc.ABC):
    """Carries ops to a store.  ``send`` returns the op's answer — for ``logs`` the last
    stored seq, for ``report`` whether a stop was requested, for ``create`` the new
    session's id — or raises ``RetryLater``, ``SessionGone``, ``LogsFull`` or ``Rejected``."""

    @abc.abstractmethod
    def send(self, session_id: Optional[str], op: Op) -> Any:
        """Deliver ``op`` for ``session_id`` (None only for ``create``); its answer."""
