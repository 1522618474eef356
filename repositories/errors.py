"""Domain exceptions. The web layer maps each ``code`` to an HTTP status in one table."""
from __future__ import annotations


class RunboardError(Exception):
    """Base of every error the repositories raise on purpose."""

    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def details(self) -> dict:
        """Facts a client can act on, sent beside ``code`` and ``message`` in the error body."""
        return {}


class ValidationError(RunboardError):
    """Input that breaks a documented limit; ``field`` names the culprit."""

    code = "validation_error"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class SessionNotFound(RunboardError):
    code = "not_found"

    def __init__(self, session_id: str):
        super().__init__(f"session {session_id} not found")
        self.session_id = session_id


class CredentialNotFound(RunboardError):
    """No API token with that id (revoking is by id; an unknown secret is simply a 401)."""

    code = "not_found"


class InvalidTransition(RunboardError):
    """The session's stored state does not allow the requested action (HTTP 409)."""

    code = "invalid_transition"

    def __init__(self, session_id: str, current, action: str, target=None):
        wanted = f" to {target}" if target is not None and action == "finish" else ""
        super().__init__(f"session {session_id} is {current}; cannot {action}{wanted}")
        self.session_id = session_id
        self.current = current
        self.action = action
        self.target = target


class LogLimitExceeded(RunboardError):
    """A log batch would cross the per-session cap; nothing of it was stored (HTTP 409)."""

    code = "log_limit_exceeded"

    def __init__(self, session_id: str, stored: int, incoming: int, cap: int):
        super().__init__(
            f"session {session_id} holds {stored} log entries; adding {incoming} would exceed "
            f"the limit of {cap}; the batch was refused and nothing was stored"
        )
        self.session_id = session_id
        self.stored, self.cap = stored, cap

    def details(self) -> dict:
        """How many entries are stored and the cap: a reporter fits its next batch to them."""
        return {"stored": self.stored, "limit": self.cap}


class IdempotencyKeyReused(RunboardError):
    """The key was first used with another body (HTTP 422): the repeat is not the same request."""

    code = "idempotency_key_reused"

    def __init__(self):
        super().__init__("Idempotency-Key: already used with a different body; use a new key for a new request")


class IdempotencyKeyInFlight(RunboardError):
    """The first request with this key is still being processed (HTTP 409); retry shortly."""

    code = "idempotency_key_in_flight"

    def __init__(self):
        super().__init__("Idempotency-Key: the first request with this key is still in progress; retry shortly")


class ConfigurationError(RunboardError):
    """Bad settings found at start-up; the message names the variable."""

    code = "configuration_error"
