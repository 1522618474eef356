"""API tokens and admin logins: the contract, its records, and the memory store.

Secrets are never stored: a token is kept as its SHA-256 digest (a 256-bit random token
needs no slow hash; a lookup must stay cheap on every request), a password through
Werkzeug's scrypt KDF.  The plain token exists only in ``create_token``'s return value.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import secrets
import threading
from datetime import datetime
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


class MemoryCredentialStore(CredentialStore):
    def __init__(self, clock: Callable[[], datetime] = utcnow):
        self._lock = threading.Lock()
        self._clock = clock
        self._tokens: dict[str, tuple[Token, str]] = {}          # id -> (token, digest)
        self._by_digest: dict[str, str] = {}
        self._users: dict[str, tuple[User, str]] = {}

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
        if entry and check_password_hash(entry[1], password):
            return entry[0]
        return None

    def has_admin(self):
        with self._lock:
            return any(user.is_admin for user, _ in self._users.values())
