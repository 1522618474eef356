"""Driver-level statements for the two calls workers make constantly: progress and logs.

Building a Core statement and running it through a SQLAlchemy Connection costs several
times what SQLite needs to commit, so ``report_progress`` and ``append_logs`` run these
few fixed statements on a pooled driver connection (``Transactions.cursor``: same pool,
same BEGIN IMMEDIATE / FOR UPDATE locking, one transaction).  Everything else uses Core.  Each dialect supplies its placeholders, JSON and timestamp
encoding here, in one place.
"""
from __future__ import annotations

import functools
from datetime import datetime, timezone

from ..records import Session
from ..states import State

from psycopg.types.json import Json

from . import jsontext
from ..errors import SessionNotFound
from .. import validation as check


#: Entries per multi-row INSERT: 6 parameters each stays far below SQLite's 32,766 limit.
LOG_ROWS_PER_INSERT = 500

#: Session columns in the order ``_Dialect.session`` reads them.
SESSION_SELECT = ("id, kind, label, owner, state, stop_requested, progress, meta, params, result, error, "
                  "tokens, cost, created_at, started_at, updated_at, finished_at, heartbeat_at, log_count")


class _Dialect:
    lock = ""
    #: The stored progress as SQL text (PostgreSQL's json type compares only as text).
    progress_text = "progress"
    #: An UPDATE that applies an RFC 7396 patch to the stored progress inside the database
    #: (SQLite's ``json_patch``), or None.
    progress_patch: str | None = None

    def __init__(self):
        self.bucket = self.sql(f"SELECT {SESSION_SELECT} FROM sessions WHERE state = ? "
                               "ORDER BY pk DESC LIMIT ?")
        self.counts = "SELECT state, sessions FROM state_counts"
        self.by_id = self.sql(f"SELECT {SESSION_SELECT} FROM sessions WHERE id = ?")
        self.progress_row = self.sql(
            "SELECT pk, id, state, stop_requested, progress, meta, owner, kind, tokens, cost"
            " FROM sessions WHERE id = ?" + self.lock)
        self.progress_update = self.sql(
            "UPDATE sessions SET progress = ?, meta = ?, tokens = ?, cost = ?, heartbeat_at = ?,"
            " updated_at = ? WHERE pk = ?")
        # The common report: progress only, so meta is neither decoded nor rewritten.
        self.progress_only_row = self.sql(
            "SELECT pk, id, state, stop_requested, progress FROM sessions WHERE id = ?" + self.lock)
        self.progress_only_update = self.sql(
            "UPDATE sessions SET progress = ?, heartbeat_at = ?, updated_at = ? WHERE pk = ?")
        # Compare-and-swap twin (SQLite): written only if the progress read is still stored
        # and the session still running, so a read and a write need no transaction around them.
        self.progress_swap = self.sql(
            "UPDATE sessions SET progress = ?, heartbeat_at = ?, updated_at = ?"
            f" WHERE pk = ? AND state = 'running' AND {self.progress_text} = ? RETURNING stop_requested")
        # The stored progress as text, for the swap to compare with.
        self.swap_row = self.sql(
            f"SELECT pk, id, state, {self.progress_text} FROM sessions WHERE id = ?")
        self.log_row = self.sql("SELECT pk, id, state, log_count FROM sessions WHERE id = ?" + self.lock)
        self.usage_add = self.sql(
            "INSERT INTO usage_rollups (owner, kind, engine, hour, sessions, tokens, cost)"
            " VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (owner, kind, engine, hour) DO UPDATE SET"
            " tokens = usage_rollups.tokens + excluded.tokens,"
            " cost = usage_rollups.cost + excluded.cost")
        self.usage_add_daily = self.sql(
            "INSERT INTO usage_daily (owner, kind, engine, day, sessions, tokens, cost)"
            " VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (owner, kind, engine, day) DO UPDATE SET"
            " tokens = usage_daily.tokens + excluded.tokens,"
            " cost = usage_daily.cost + excluded.cost")
        self.log_update = self.sql(
            "UPDATE sessions SET log_count = ?, heartbeat_at = ?, updated_at = ? WHERE pk = ?")

    def sql(self, text: str) -> str:
        return text

    def insert_logs(self, cursor, pk: int, first: int, stamp, batch) -> None:
        """Store ``batch`` as entries ``first``, ``first + 1``, … in as few statement steps
        as possible (each step releases and re-takes the GIL, which is costly under gthread)."""
        for offset in range(0, len(batch), LOG_ROWS_PER_INSERT):
            part = batch[offset:offset + LOG_ROWS_PER_INSERT]
            values = []
            for i, e in enumerate(part, start=first + offset):
                values += (pk, i, stamp, e.level, e.message, self.dump_json(e.fields))
            cursor.execute(self._log_insert_rows(len(part)), values)

    @functools.lru_cache(maxsize=64)
    def _log_insert_rows(self, rows: int) -> str:
        """One INSERT with ``rows`` VALUES groups."""
        return self.sql("INSERT INTO log_entries (session_pk, seq, ts, level, message, fields) VALUES "
                        + ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows))

    def session(self, row) -> Session:
        """A Session from a row selected with SESSION_SELECT."""
        load, ts = self.load_json, self.load_ts
        result = row[9]
        return Session(
            id=row[0], kind=row[1], label=row[2], owner=row[3], state=State(row[4]),
            stop_requested=bool(row[5]), progress=load(row[6]), meta=load(row[7]), params=load(row[8]),
            result=None if result is None else load(result), error=row[10],
            usage={"tokens": int(row[11]), "cost": float(row[12])}, created_at=ts(row[13]),
            started_at=ts(row[14]), updated_at=ts(row[15]), finished_at=ts(row[16]),
            heartbeat_at=ts(row[17]), log_count=row[18])

    def fetch(self, cursor, statement: str, session_id: str):
        """Run a one-row lookup by session id; SessionNotFound when there is none."""
        key = check.session_key(session_id)
        cursor.execute(statement, (key,))
        row = cursor.fetchone()
        if row is None:
            raise SessionNotFound(key)
        return row


class _Sqlite(_Dialect):
    # One statement: no read, no JSON decoded or re-encoded in Python.  json_patch keeps
    # every number's and string's text as stored, so values round-trip exactly.
    progress_patch = ("UPDATE sessions SET progress = json_patch(progress, ?), heartbeat_at = ?,"
                      " updated_at = ? WHERE id = ? AND state = 'running' RETURNING stop_requested")

    @staticmethod
    def dump_json(value):
        return "{}" if value == {} else jsontext.dumps(value)   # empty `fields` is the norm

    @staticmethod
    def load_json(value):
        return {} if value == "{}" else jsontext.loads_text(value)

    @staticmethod
    def dump_ts(moment: datetime) -> str:
        # The text form SQLAlchemy's SQLite DateTime writes and parses: naive UTC.
        return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")

    @staticmethod
    def load_ts(value):
        # Parsing the offset is cheaper than a replace() of the parsed value (five a row).
        return None if value is None else datetime.fromisoformat(value + "+00:00")


class _Postgres(_Dialect):
    lock = " FOR UPDATE"
    progress_text = "progress::text"
    # The whole batch as one JSON document the server unpacks: one parameter instead of
    # 6 × n placeholders (which psycopg re-parsed on every call) or three text arrays
    # (which psycopg escapes element by element in Python, ~0.6 ms a batch of 100).
    # json_to_recordset keeps each entry's ``fields`` text exactly as sent.
    _log_insert_json = (
        "INSERT INTO log_entries (session_pk, seq, ts, level, message, fields)"
        " SELECT %s, %s + t.n - 1, %s, t.level, t.message, t.fields"
        " FROM ROWS FROM (json_to_recordset(%s::json) AS (level text, message text, fields json))"
        " WITH ORDINALITY AS t(level, message, fields, n)")

    def insert_logs(self, cursor, pk: int, first: int, stamp, batch) -> None:
        entries = jsontext.dumps([{"level": e.level, "message": e.message, "fields": e.fields} for e in batch])
        cursor.execute(self._log_insert_json, (pk, first, stamp, entries))

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

    @staticmethod
    def load_ts(value):
        if value is None or value.tzinfo is timezone.utc:
            return value
        return value.astimezone(timezone.utc)


DIALECTS = {"sqlite": _Sqlite(), "postgresql": _Postgres()}

