"""Tokens and logins on the SQL stores (same contract as the memory credential store)."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Callable

from sqlalchemy import bindparam, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash

from ..credentials import (CredentialStore, Token, User, check_token_fields, check_user_fields,
                           new_secret, password_matches, throttle_wait, token_digest, touch_every)
from ..errors import CredentialNotFound, ValidationError
from ..records import utcnow
from .engine import Transactions
from .models import ApiTokenRow, LoginThrottleRow, PanelSessionRow, UserRow
from .statements import dialect_insert

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
SET_PASSWORD = update(users).where(users.c.name == bindparam("p_name")).values(password_hash=bindparam("p_hash"))

panel = PanelSessionRow.__table__
INSERT_PANEL = insert(panel).values({name: bindparam(name) for name in panel.c.keys()})
PANEL = (select(panel.c.seen_at, panel.c.expires_at, users.c.name, users.c.is_admin, users.c.created_at)
         .join(users, users.c.name == panel.c.user_name).where(panel.c.token_hash == bindparam("p_digest")))
TOUCH_PANEL = update(panel).where(panel.c.token_hash == bindparam("p_digest")).values(seen_at=bindparam("p_now"))
CLOSE_PANEL = delete(panel).where(panel.c.token_hash == bindparam("p_digest"))
CLOSE_USER_PANELS = delete(panel).where(panel.c.user_name == bindparam("p_name"))
EXPIRED_PANELS = delete(panel).where(panel.c.expires_at <= bindparam("p_now"))

throttle = LoginThrottleRow.__table__
OLD_WINDOWS = delete(throttle).where(throttle.c.window_start <= bindparam("p_cutoff"))


def _throttle_upsert(dialect: str):
    """One statement: a window older than the cutoff starts again at one attempt, else the
    count goes up; the row lock of the upsert makes concurrent attempts count one by one."""
    stmt = dialect_insert(dialect, throttle).values(client=bindparam("p_client"), window_start=bindparam("p_now"),
                                                    attempts=1)
    expired = throttle.c.window_start <= bindparam("p_cutoff")
    return stmt.on_conflict_do_update(
        index_elements=["client"],
        set_={"window_start": case((expired, stmt.excluded.window_start), else_=throttle.c.window_start),
              "attempts": case((expired, 1), else_=throttle.c.attempts + 1)},
    ).returning(throttle.c.window_start, throttle.c.attempts)


COUNT_ATTEMPT = {name: _throttle_upsert(name) for name in ("sqlite", "postgresql")}


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
        if password_matches(row.password_hash if row else None, password):
            return User(row.name, row.is_admin, row.created_at)
        return None

    def has_admin(self):
        with self._tx(write=False) as tx:
            return tx.first(ANY_ADMIN) is not None

    def set_password(self, name, password):
        check_user_fields(name, password)
        hashed = generate_password_hash(password)
        with self._tx(write=True) as tx:
            tx.execute(SET_PASSWORD, {"p_name": name, "p_hash": hashed})
            if tx.rowcount == 0:
                raise CredentialNotFound(f"user {name!r} not found")
            tx.execute(CLOSE_USER_PANELS, {"p_name": name})
            row = tx.first(USER, {"p_name": name})
        return User(row.name, row.is_admin, row.created_at)

    def open_panel_session(self, name, *, lifetime):
        secret, now = secrets.token_urlsafe(32), self._clock()
        with self._tx(write=True) as tx:
            tx.execute(EXPIRED_PANELS, {"p_now": now})
            tx.execute(INSERT_PANEL, {"token_hash": token_digest(secret), "user_name": name, "created_at": now,
                                      "seen_at": now, "expires_at": now + lifetime})
        return secret

    def find_panel_session(self, secret, *, idle):
        digest, now = token_digest(secret), self._clock()
        with self._tx(write=False) as tx:
            row = tx.first(PANEL, {"p_digest": digest})
        if row is None:
            return None
        if now >= row.expires_at or now - row.seen_at >= idle:
            self.close_panel_session(secret)
            return None
        if now - row.seen_at >= touch_every(idle):
            with self._tx(write=True) as tx:
                tx.execute(TOUCH_PANEL, {"p_digest": digest, "p_now": now})
        return User(row.name, row.is_admin, row.created_at)

    def close_panel_session(self, secret):
        with self._tx(write=True) as tx:
            tx.execute(CLOSE_PANEL, {"p_digest": token_digest(secret)})

    def count_login_attempt(self, client, *, limit, window):
        now = self._clock()
        values = {"p_client": client, "p_now": now, "p_cutoff": now - window}
        with self._tx(write=True) as tx:
            row = tx.first(COUNT_ATTEMPT[self._tx.engine.dialect.name], values)
            tx.execute(OLD_WINDOWS, {"p_cutoff": now - window})
        return throttle_wait(row.window_start, row.attempts, now=now, limit=limit, window=window)
