"""Tokens and logins on the SQL stores (same contract as the memory credential store)."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..credentials import (CredentialStore, Token, User, check_token_fields,
                           check_user_fields, new_secret, token_digest)
from ..errors import CredentialNotFound, ValidationError
from ..records import utcnow
from .engine import Transactions
from .models import ApiTokenRow, UserRow

tokens = ApiTokenRow.__table__
users = UserRow.__table__
TOKEN_COLUMNS = [tokens.c.id, tokens.c.name, tokens.c.role, tokens.c.owner, tokens.c.created_at,
                 tokens.c.revoked_at]
FIND_TOKEN = select(*TOKEN_COLUMNS).where(tokens.c.token_hash == bindparam("p_digest"), tokens.c.revoked_at.is_(None))


def _token(row) -> Token:
    return Token(row.id, row.name, row.role, row.owner, row.created_at, row.revoked_at)


INSERT_TOKEN = insert(tokens).values({name: bindparam(name) for name in tokens.c.keys()})
TOKENS = select(*TOKEN_COLUMNS).order_by(tokens.c.created_at)
TOKEN = select(*TOKEN_COLUMNS).where(tokens.c.id == bindparam("p_id"))
REVOKE = (update(tokens).where(tokens.c.id == bindparam("p_id"), tokens.c.revoked_at.is_(None))
          .values(revoked_at=bindparam("p_now")))
INSERT_USER = insert(users).values({name: bindparam(name) for name in users.c.keys()})
USER = select(*users.c).where(users.c.name == bindparam("p_name"))
ANY_ADMIN = select(users.c.name).where(users.c.is_admin.is_(True)).limit(1)


class SqlCredentialStore(CredentialStore):
    """Shares the session store's ``Transactions`` (one SQLite writer queue per database)."""

    def __init__(self, transactions: Transactions, clock: Callable[[], datetime] = utcnow):
        self._tx = transactions
        self._clock = clock

    def create_token(self, *, role, owner, name=""):
        check_token_fields(role, owner, name)
        secret = new_secret()
        token = Token(secrets.token_hex(8), name, role, owner.strip(), self._clock())
        with self._tx(write=True) as tx:
            tx.execute(INSERT_TOKEN, {"id": token.id, "name": name, "role": role, "owner": token.owner,
                                      "token_hash": token_digest(secret), "created_at": token.created_at,
                                      "revoked_at": None})
        return token, secret

    def find_token(self, secret):
        with self._tx(write=False) as tx:
            row = tx.first(FIND_TOKEN, {"p_digest": token_digest(secret)})
        return None if row is None else _token(row)

    def list_tokens(self):
        with self._tx(write=False) as tx:
            return [_token(r) for r in tx.execute(TOKENS)]

    def revoke_token(self, token_id):
        with self._tx(write=True) as tx:
            tx.execute(REVOKE, {"p_id": token_id, "p_now": self._clock()})
            row = tx.first(TOKEN, {"p_id": token_id})
        if row is None:
            raise CredentialNotFound(f"token {token_id} not found")
        return _token(row)

    def create_user(self, *, name, password, is_admin):
        check_user_fields(name, password)
        user = User(name, is_admin, self._clock())
        try:
            with self._tx(write=True) as tx:
                tx.execute(INSERT_USER, {"name": name, "password_hash": generate_password_hash(password),
                                         "is_admin": is_admin, "created_at": user.created_at})
        except IntegrityError:
            raise ValidationError("name", f"a user named {name!r} exists") from None
        return user

    def verify_user(self, name, password):
        with self._tx(write=False) as tx:
            row = tx.first(USER, {"p_name": name})
        if row and check_password_hash(row.password_hash, password):
            return User(row.name, row.is_admin, row.created_at)
        return None

    def has_admin(self):
        with self._tx(write=False) as tx:
            return tx.first(ANY_ADMIN) is not None
