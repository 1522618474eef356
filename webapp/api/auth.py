"""Who is calling: bearer tokens to a Principal, and the one place owner isolation lives."""
from __future__ import annotations

import dataclasses
import hmac

from flask import current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from repositories.errors import SessionNotFound
from repositories.records import Session

from ..store import get_credentials, get_repository

ADMIN, WORKER, USER = "admin", "worker", "user"
EVERYONE = frozenset({ADMIN, WORKER, USER})


@dataclasses.dataclass(frozen=True)
class Principal:
    role: str
    owner: str
    token_id: str | None = None

    @property
    def sees_cost(self) -> bool:
        return self.role != USER


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, www_authenticate=WWWAuthenticate("bearer", {"realm": "runboard"}))


def authenticate() -> Principal:
    """The caller of this request; 401 when the bearer token is missing, unknown or revoked."""
    header = request.environ.get("HTTP_AUTHORIZATION", "")      # on every API call: skip the header view
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise _unauthorized("send Authorization: Bearer <token>")
    secret = secret.strip()
    admin_token = current_app.config["RUNBOARD"].admin_token
    if admin_token and hmac.compare_digest(secret.encode(), admin_token.encode()):
        return Principal(ADMIN, "admin")
    token = get_credentials().find_token(secret)
    if token is None:
        raise _unauthorized("unknown or revoked token")
    return Principal(token.role, token.owner, token.id)


def require_role(principal: Principal, roles: frozenset[str], session_id: str | None) -> None:
    """403 for a role the endpoint does not admit — but a user asking about someone else's
    session gets the 404 they would get for a session that does not exist."""
    if principal.role in roles:
        return
    if session_id is not None:
        visible_session(principal, session_id)
    raise Forbidden(f"the {principal.role} role may not do this")


def visible_session(principal: Principal, session_id: str) -> Session:
    """The session if the caller may see it; SessionNotFound otherwise (never 403)."""
    session = get_repository().get(session_id)
    if principal.role == USER and session.owner != principal.owner:
        raise SessionNotFound(session_id)
    return session


def check_visible(principal: Principal, session_id: str) -> None:
    """Owner isolation without a read for admins and workers, who may see every session."""
    if principal.role == USER:
        visible_session(principal, session_id)
