"""Driver-level statements for the two calls workers make constantly: progress and logs.

Building a Core statement and running it through a SQLAlchemy Connection costs several
times what SQLite needs to commit, so ``report_progress`` and ``append_logs`` run these
few fixed statements on a pooled driver connection (``Transactions.cursor``: same pool,
same BEGIN IMMEDIATE / FOR UPDATE locking, one transaction).  Everything else uses Core.  Each dialect supplies its placeholders, JSON and timestamp
encoding here, in one place.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from psycopg.types.json import Json

from ..errors import SessionNotFound
from .. import validation as check


class _Dialect:
    lock = ""

    def __init__(self):
        self.progress_row = self.sql(
            "SELECT pk, id, state, stop_requested, progress, meta, owner, kind, tokens, cost"
            " FROM sessions WHERE id = ?" + self.lock)
        self.progress_update = self.sql(
            "UPDATE sessions SET progress = ?, meta = ?, tokens = ?, cost = ?, heartbeat_at = ?,"
            " updated_at = ? WHERE pk = ?")
        self.log_row = self.sql("SELECT pk, id, state, log_count FROM sessions WHERE id = ?" + self.lock)
        self.log_insert = self.sql(
            "INSERT INTO log_entries (session_pk, seq, ts, level, message, fields)"
            " VALUES (?, ?, ?, ?, ?, ?)")
        self.usage_add = self.sql(
            "INSERT INTO usage_rollups (owner, kind, engine, hour, sessions, tokens, cost)"
            " VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (owner, kind, engine, hour) DO UPDATE SET"
            " tokens = usage_rollups.tokens + excluded.tokens,"
            " cost = usage_rollups.cost + excluded.cost")
        self.log_update = self.sql(
            "UPDATE sessions SET log_count = ?, heartbeat_at = ?, updated_at = ? WHERE pk = ?")

    def sql(self, text: str) -> str:
        return text

    def fetch(self, cursor, statement: str, session_id: str):
        """Run a one-row lookup by session id; SessionNotFound when there is none."""
        try:
            key = check.check_session_id(session_id)
        except check.ValidationError:
            raise SessionNotFound(str(session_id)) from None
        cursor.execute(statement, (key,))
        row = cursor.fetchone()
        if row is None:
            raise SessionNotFound(key)
        return row


class _Sqlite(_Dialect):
    @staticmethod
    def dump_json(value):
        return json.dumps(value)

    @staticmethod
    def load_json(value):
        return json.loads(value)

    @staticmethod
    def dump_ts(moment: datetime) -> str:
        # The text form SQLAlchemy's SQLite DateTime writes and parses: naive UTC.
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


class _Postgres(_Dialect):
    lock = " FOR UPDATE"

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    @staticmethod
    def dump_json(value):
        return Json(value)

    @staticmethod
    def load_json(value):
        return value          # psycopg already decodes json

    @staticmethod
    def dump_ts(moment: datetime) -> datetime:
        return moment


DIALECTS = {"sqlite": _Sqlite(), "postgresql": _Postgres()}

