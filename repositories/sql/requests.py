"""Idempotency keys on the SQL stores: one claim per digest, the first answer kept.

The claim lives in the transaction that also runs the request and keeps its answer, so a
repeat only ever sees a claim with its answer.  Each store has one way to take it:

* PostgreSQL: an ``INSERT … ON CONFLICT DO NOTHING`` first, settled with the answer at the
  end; of concurrent claims exactly one inserts, and the others wait on its row until it
  commits, then read it, answered.
* SQLite: a write transaction holds the database's only writer from its ``BEGIN``, so
  nothing can claim the digest between a read of it at the start and one insert of the
  claim with its answer at the end: one write fewer inside the writer (docs/benchmarks.md,
  "Idempotency-Key").
"""
from __future__ import annotations

import contextlib

from sqlalchemy import bindparam, delete, select, update

from ..base import replay_of
from ..records import Claim
from .models import IdempotencyKeyRow
from .statements import dialect_insert

requests = IdempotencyKeyRow.__table__
CLAIMED = select(requests.c.fingerprint, requests.c.status, requests.c.body).where(
    requests.c.digest == bindparam("p_digest"))
SETTLE = (update(requests).where(requests.c.digest == bindparam("p_digest"))
          .values(status=bindparam("p_status"), body=bindparam("p_body"), session_id=bindparam("p_session_id")))
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


CLAIM = _claim("postgresql")
LIVE = CLAIMED.where(requests.c.expires_at > bindparam("p_now"))


def _kept():
    """SQLite: the claim with its answer in one statement, over an expired one of the same digest."""
    names = ("digest", "fingerprint", "created_at", "expires_at", "status", "body", "session_id")
    insert = dialect_insert("sqlite", requests).values(**{name: bindparam(name) for name in names})
    return insert.on_conflict_do_update(index_elements=["digest"],
                                        set_={name: getattr(insert.excluded, name) for name in names[1:]})


KEPT = _kept()


class SqlRequests:
    @contextlib.contextmanager
    def once(self, digest, fingerprint, *, keep):
        """One write transaction holds the claim, the block's own store calls (they join
        it: ``Transactions``) and the kept answer, so there is never a claim without its
        request's effects or the reverse, and nothing lapses: a repeat waits for this
        one's commit (PostgreSQL's row lock, SQLite's writer lock) and then replays."""
        way = self._once_under_the_writer if self.name == "sqlite" else self._once_claimed_first
        with self._tx() as tx:
            yield from way(tx, self._clock(), digest, fingerprint, keep)

    def _once_claimed_first(self, tx, now, digest, fingerprint, keep):
        """PostgreSQL's way (see the module's docstring)."""
        if tx.first(CLAIM, {"digest": digest, "fingerprint": fingerprint, "created_at": now,
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
                                "p_session_id": session_id})

    def _once_under_the_writer(self, tx, now, digest, fingerprint, keep):
        """SQLite's way (see the module's docstring)."""
        row = tx.first(LIVE, {"p_digest": digest, "p_now": now})
        if row is not None:
            yield Claim(replay_of(row.fingerprint, row.status, row.body, fingerprint))
            return
        claim = Claim()
        yield claim
        if claim.answer is not None:
            status, body, session_id = claim.answer
            tx.execute(KEPT, {"digest": digest, "fingerprint": fingerprint, "created_at": now,
                              "expires_at": now + keep, "status": status, "body": body, "session_id": session_id})

    def after_commit(self, action):
        self.transactions.after_commit(action)
