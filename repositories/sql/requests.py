"""Idempotency keys on the SQL stores: one claim per digest, the first answer kept.

The claim is an ``INSERT … ON CONFLICT DO NOTHING`` in the transaction that also runs the
request and keeps its answer: of concurrent claims exactly one inserts (PostgreSQL makes
the others wait for its commit, SQLite's writer lock orders them), and every other one
then reads the row that won, answered.
"""
from __future__ import annotations

import contextlib

from sqlalchemy import bindparam, delete, func, select, update

from ..base import replay_of
from ..records import Claim
from .models import IdempotencyKeyRow
from .statements import dialect_insert

requests = IdempotencyKeyRow.__table__
CLAIMED = select(requests.c.fingerprint, requests.c.status, requests.c.body).where(
    requests.c.digest == bindparam("p_digest"))
SETTLE = (update(requests).where(requests.c.digest == bindparam("p_digest"))
          .values(status=bindparam("p_status"), body=bindparam("p_body"), session_id=bindparam("p_session_id"),
                  expires_at=func.coalesce(bindparam("p_expires_at", type_=requests.c.expires_at.type),
                                           requests.c.expires_at)))
FORGET = delete(requests).where(requests.c.digest == bindparam("p_digest"))
FORGET_SESSION = delete(requests).where(requests.c.session_id == bindparam("p_session_id"))
EXPIRED = delete(requests).where(requests.c.expires_at <= bindparam("p_now"))


def _claim(dialect: str):
    """Insert the claim, or take over an expired one, in one statement: a row comes back
    unless a live claim holds the digest."""
    values = {name: bindparam(name) for name in ("digest", "fingerprint", "created_at", "expires_at")}
    insert = dialect_insert(dialect, requests).values(status=None, body=None, session_id=None, **values)
    fresh = {name: getattr(insert.excluded, name) for name in ("fingerprint", "created_at", "expires_at")}
    return (insert.on_conflict_do_update(index_elements=["digest"], where=requests.c.expires_at <= bindparam("p_now"),
                                         set_={**fresh, "status": None, "body": None, "session_id": None})
            .returning(requests.c.digest))


CLAIM = {name: _claim(name) for name in ("sqlite", "postgresql")}


class SqlRequests:
    @contextlib.contextmanager
    def once(self, digest, fingerprint, *, keep):
        """One write transaction holds the claim, the block's own store calls (they join
        it: ``Transactions``) and the kept answer, so there is never a claim without its
        request's effects or the reverse, and nothing lapses: a repeat's INSERT waits for
        this one's commit (PostgreSQL's row lock, SQLite's writer lock) and then replays."""
        with self._tx() as tx:
            now = self._clock()
            if tx.first(CLAIM[self.name], {"digest": digest, "fingerprint": fingerprint, "created_at": now,
                                            "expires_at": now + keep, "p_now": now}) is None:
                row = tx.first(CLAIMED, {"p_digest": digest})
                yield Claim(replay_of(row.fingerprint, row.status, row.body, fingerprint))
                return
            claim = Claim()
            yield claim
            if claim.answer is None:
                tx.execute(FORGET, {"p_digest": digest})
            else:
                status, body, session_id = claim.answer
                tx.execute(SETTLE, {"p_digest": digest, "p_status": status, "p_body": body,
                                    "p_session_id": session_id, "p_expires_at": None})

    def after_commit(self, action):
        self.transactions.after_commit(action)
