"""API tokens and admin logins: the contract, its records, and the memory store.

Secrets are never stored: a token is kept as its SHA-256 digest (a 256-bit random token
needs no slow hash; a lookup must stay cheap on every request), a password through
Werkzeug's scrypt KDF.  The plain token exists only in ``create_token``'s return value.

Panel sessions live here too, so ending one (logout, a password change, expiry) ends it
for every worker: the cookie carries a random secret, the store its digest.  The login
throttle counts here for the same reason: every worker sees one count per address.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import secrets
import threading
from datetime import datetime, timedelta
from typing import Callable

from werkzeug.security import check_password_hash, generate_password_hash

from .errors import CredentialNotFound, ValidationError
from .records import utcnow
from .validation import MAX_OWNER, MAX_TOKEN_NAME, MAX_USER_NAME

ROLES = ("admin", "worker", "user")
TOKEN_PREFIX = "rb_"


@dataclasses.dataclass(frozen=True)
class Token:
    id: str
    name: str
    role: str
    owner: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    is_admin: bool
    created_at: datetime


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)            # 256 bits


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


_DUMMY_HASH: list[str] = []


def password_matches(hashed: str | None, password: str) -> bool:
    """Check ``password`` against ``hashed``, or against a throwaway hash when the user does
    not exist: a failed login then costs one KDF run either way, so its time does not tell
    which names exist."""
    if hashed is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(generate_password_hash(secrets.token_urlsafe(16)))
        check_password_hash(_DUMMY_HASH[0], password)
        return False
    return check_password_hash(hashed, password)


def touch_every(idle: timedelta) -> timedelta:
    """How stale a panel session's ``seen_at`` may get before a request rewrites it: a
    write per page view would queue every page behind SQLite's one writer, and idle expiry
    only needs ``seen_at`` to within a small part of the idle lifetime."""
    return min(idle / 10, timedelta(seconds=60))


def throttle_wait(window_start: datetime, attempts: int, *, now: datetime, limit: int,
                  window: timedelta) -> float | None:
    """Seconds until ``client`` may try again once ``attempts`` passed ``limit``, else None."""
    if attempts <= limit:
        return None
    return max((window_start + window - now).total_seconds(), 1.0)


def check_token_fields(role: str, owner: str, name: str) -> None:
    if role not in ROLES:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)}")
    if not isinstance(owner, str) or not owner.strip() or len(owner) > MAX_OWNER:
        raise ValidationError("owner", f"must be a non-empty string of at most {MAX_OWNER} characters")
    if not isinstance(name, str) or len(name) > MAX_TOKEN_NAME:
        raise ValidationError("name", f"must be at most {MAX_TOKEN_NAME} characters")


def check_user_fields(name: str, password: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_USER_NAME:
        raise ValidationError("name", f"must be a non-empty string of at most {MAX_USER_NAME} characters")
    if not isinstance(password, str) or len(password) < 8:
        raise ValidationError("password", "must be at least 8 characters")


class CredentialStore(abc.ABC):
    @abc.abstractmethod
    def create_token(self, *, role: str, owner: str, name: str = "") -> tuple[Token, str]:
        """Store a new token; return it with its secret, which is never retrievable again.
        Raises ValidationError for an unknown role or bad owner/name."""

    @abc.abstractmethod
    def find_token(self, secret: str) -> Token | None:
        """The live (not revoked) token with this secret, or None."""

    @abc.abstractmethod
    def list_tokens(self) -> list[Token]:
        """Every token, oldest first, without secrets."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str) -> Token:
        """Revoke a token (idempotent).  Raises CredentialNotFound."""

    @abc.abstractmethod
    def create_user(self, *, name: str, password: str, is_admin: bool) -> User:
        """Store a login with a hashed password.  Raises ValidationError (also for a taken name)."""

    @abc.abstractmethod
    def verify_user(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None."""

    @abc.abstractmethod
    def has_admin(self) -> bool:
        """True once at least one admin login exists (the panel is closed until then)."""

    @abc.abstractmethod
    def set_password(self, name: str, password: str) -> User:
        """Replace a login's password and end every panel session it has open.
        Raises CredentialNotFound for an unknown name, ValidationError for a short password."""

    @abc.abstractmethod
    def open_panel_session(self, name: str, *, lifetime: timedelta) -> str:
        """Start a panel session for ``name`` that ends ``lifetime`` from now at the latest;
        return its secret (the cookie's value).  Expired sessions are removed on the way."""

    @abc.abstractmethod
    def find_panel_session(self, secret: str, *, idle: timedelta) -> User | None:
        """The user of a live panel session, or None: unknown, closed, past its absolute
        lifetime, unused for ``idle``, or its user gone.  Marks the session used."""

    @abc.abstractmethod
    def close_panel_session(self, secret: str) -> None:
        """End a panel session (idempotent)."""

    @abc.abstractmethod
    def count_login_attempt(self, client: str, *, limit: int, window: timedelta) -> float | None:
        """Count one login attempt from ``client``: None while it is within ``limit`` attempts
        in the window that its first attempt opened, else the seconds until that window ends
        (the attempt is still counted).  Atomic across threads, processes and hosts."""


class MemoryCredentialStore(CredentialStore):
    def __init__(self, clock: Callable[[], datetime] = utcnow):
        self._lock = threading.Lock()
        self._clock = clock
        self._tokens: dict[str, tuple[Token, str]] = {}          # id -> (token, digest)
        self._by_digest: dict[str, str] = {}
        self._users: dict[str, tuple[User, str]] = {}
        self._panel: dict[str, list] = {}                        # digest -> [name, created, seen, expires]
        self._throttle: dict[str, tuple[datetime, int]] = {}     # client -> (window start, attempts)

    def create_token(self, *, role, owner, name=""):
        check_token_fields(role, owner, name)
        secret = new_secret()
        token = Token(secrets.token_hex(8), name, role, owner.strip(), self._clock())
        with self._lock:
            self._tokens[token.id] = (token, token_digest(secret))
            self._by_digest[token_digest(secret)] = token.id
        return token, secret

    def find_token(self, secret):
        with self._lock:
            token_id = self._by_digest.get(token_digest(secret))
            token = self._tokens[token_id][0] if token_id else None
        return token if token and token.revoked_at is None else None

    def list_tokens(self):
        with self._lock:
            return sorted((t for t, _ in self._tokens.values()), key=lambda t: t.created_at)

    def revoke_token(self, token_id):
        with self._lock:
            if token_id not in self._tokens:
                raise CredentialNotFound(f"token {token_id} not found")
            token, digest = self._tokens[token_id]
            if token.revoked_at is None:
                token = dataclasses.replace(token, revoked_at=self._clock())
                self._tokens[token_id] = (token, digest)
            return token

    def create_user(self, *, name, password, is_admin):
        check_user_fields(name, password)
        user = User(name, is_admin, self._clock())
        hashed = generate_password_hash(password)
        with self._lock:
            if name in self._users:
                raise ValidationError("name", f"a user named {name!r} exists")
            self._users[name] = (user, hashed)
        return user

    def verify_user(self, name, password):
        with self._lock:
            entry = self._users.get(name)
        if password_matches(entry[1] if entry else None, password):
            return entry[0]
        return None

    def has_admin(self):
        with self._lock:
            return any(user.is_admin for user, _ in self._users.values())

    def set_password(self, name, password):
        check_user_fields(name, password)
        hashed = generate_password_hash(password)
        with self._lock:
            if name not in self._users:
                raise CredentialNotFound(f"user {name!r} not found")
            user = self._users[name][0]
            self._users[name] = (user, hashed)
            self._panel = {d: entry for d, entry in self._panel.items() if entry[0] != name}
        return user

    def open_panel_session(self, name, *, lifetime):
        secret, now = secrets.token_urlsafe(32), self._clock()
        with self._lock:
            self._panel = {d: entry for d, entry in self._panel.items() if entry[3] > now}
            self._panel[token_digest(secret)] = [name, now, now, now + lifetime]
        return secret

    def find_panel_session(self, secret, *, idle):
        digest, now = token_digest(secret), self._clock()
        with self._lock:
            entry = self._panel.get(digest)
            if entry is None:
                return None
            name, _created, seen, expires = entry
            user = self._users.get(name)
            if user is None or now >= expires or now - seen >= idle:
                del self._panel[digest]
                return None
            entry[2] = now
            return user[0]

    def close_panel_session(self, secret):
        with self._lock:
            self._panel.pop(token_digest(secret), None)

    def count_login_attempt(self, client, *, limit, window):
        now = self._clock()
        with self._lock:
            start, attempts = self._throttle.get(client, (now, 0))
            if now - start >= window:
                start, attempts = now, 0
            self._throttle[client] = (start, attempts + 1)
            self._throttle = {c: v for c, v in self._throttle.items() if now - v[0] < window}
        return throttle_wait(start, attempts + 1, now=now, limit=limit, window=window)
