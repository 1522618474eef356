"""Table definitions shared by the SQL store, Flask-SQLAlchemy and Flask-Migrate.

Defined on a plain ``DeclarativeBase`` so ``repositories/`` needs no Flask; the web app
hands this base to Flask-SQLAlchemy (``SQLAlchemy(model_class=Base)``) so migrations see
exactly these tables.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, Index, Integer,
                        MetaData, String, Text, event, insert)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ..states import State

_ZERO = timedelta(0)
NAMING = {"ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
          "pk": "pk_%(table_name)s"}

#: Plain JSON text on both databases, not JSONB: nothing queries inside these documents,
#: and JSONB would rewrite numbers (4.59e16 comes back as 45948938817110020) and refuse
#: "\u0000"; JSON keeps exactly what the client sent.
Json = JSON()
#: Like Json, but Python None is stored as SQL NULL rather than the JSON literal null.
NullableJson = JSON(none_as_null=True)
#: SQLite only aliases ROWID for exactly "INTEGER PRIMARY KEY", which keeps inserts cheap.
BigKey = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """Always hands out aware UTC datetimes; SQLite stores naive UTC text that sorts correctly."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and dialect.name == "sqlite":
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def bind_processor(self, dialect):
        if dialect.name == "sqlite":
            # The text SQLAlchemy's SQLite DATETIME writes, made by the C formatter: its
            # own %-format costs more than the rest of a progress report's parameters.
            return _format_sqlite_timestamp
        return super().bind_processor(dialect)

    def result_processor(self, dialect, coltype):
        if dialect.name == "sqlite":
            # SQLite hands back the text we wrote; the C parser is several times faster
            # than SQLAlchemy's regex, which matters when a snapshot reads ~1,000 rows.
            return _parse_sqlite_timestamp
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        if value.utcoffset() == _ZERO:        # already UTC (we ask PostgreSQL for UTC sessions)
            return value.replace(tzinfo=timezone.utc) if value.tzinfo is not timezone.utc else value
        return value.astimezone(timezone.utc)


def _format_sqlite_timestamp(value):
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def _parse_sqlite_timestamp(value):
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SessionRow(Base):
    """One tracked session.  ``pk`` orders sessions newest-first and keys the log table."""

    __tablename__ = "sessions"

    pk: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(256), default="")
    owner: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[dict] = mapped_column(Json)
    meta: Mapped[dict] = mapped_column(Json)
    params: Mapped[dict] = mapped_column(Json)
    result: Mapped[dict | None] = mapped_column(NullableJson, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=2)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    log_count: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(256), nullable=True)

    __table_args__ = (
        # Each list filter and each snapshot bucket walks one of these newest-first.
        Index("ix_sessions_state_pk", "state", "pk"),
        Index("ix_sessions_owner_pk", "owner", "pk"),
        Index("ix_sessions_kind_pk", "kind", "pk"),
        # Retention finds finished sessions without touching live ones.
        Index("ix_sessions_finished_at", "finished_at"),
    )


class LogRow(Base):
    """Append-only log entries; (session_pk, seq) is both the key and the read order.
    ``ts`` is when the server stored an entry, ``at`` the reporter's time of the event
    (NULL when none was sent; added by migration 0010, hence last).

    No foreign key to ``sessions``: PostgreSQL checks one with a trigger per inserted row,
    which was more than half the cost of storing a 100-entry batch.  The store keeps the
    invariant itself: entries are appended under the session row's lock after checking it
    exists, and cleanup deletes a session's entries and its row in one transaction.
    """

    __tablename__ = "log_entries"

    session_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict] = mapped_column(Json)
    at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class StateCountRow(Base):
    """Sessions per state, kept in the same transaction as every state change so a
    snapshot never has to COUNT(*) a million rows."""

    __tablename__ = "state_counts"

    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    sessions: Mapped[int] = mapped_column(BigInteger, default=0)


class _UsageSums:
    """The columns both rollup tables share: the key's owner/kind/engine and the sums."""

    owner: Mapped[str] = mapped_column(String(256), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    engine: Mapped[str] = mapped_column(String(128), primary_key=True)
    sessions: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=2)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=2)
    cost: Mapped[float] = mapped_column(Float, default=0.0, sort_order=2)


class UsageRollupRow(_UsageSums, Base):
    """Usage per (owner, kind, engine, hour); outlives the sessions it sums."""

    __tablename__ = "usage_rollups"

    hour: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True, sort_order=1)   # keys first

    __table_args__ = (Index("ix_usage_rollups_hour", "hour"),)


class UsageDailyRow(_UsageSums, Base):
    """The same sums per UTC day, kept in the same transaction as the hourly row: a usage page
    over weeks reads a table 24 times smaller instead of one row per session-hour."""

    __tablename__ = "usage_daily"

    day: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True, sort_order=1)

    __table_args__ = (Index("ix_usage_daily_day", "day"),)


class WorkerRow(Base):
    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    active: Mapped[int] = mapped_column(Integer, default=0)
    rss_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class SchedulerLeaseRow(Base):
    """Which process runs the scheduler's ticks, until when (renewed by every tick it runs)."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SchedulerTickRow(Base):
    """One row per tick of a scheduled job that ran: its key makes a second run impossible."""

    __tablename__ = "scheduler_ticks"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    tick: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(128))
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiTokenRow(Base):
    """A bearer token; only the SHA-256 digest of its secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(256))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class UserRow(Base):
    """An admin-panel login; the password is kept as a scrypt hash."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)



class PanelSessionRow(Base):
    """A logged-in panel session: the cookie carries its secret, the store its SHA-256 digest,
    so logout, a password change or expiry ends it on the server."""

    __tablename__ = "panel_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class LoginThrottleRow(Base):
    """Login attempts per client address in the current window, shared by every worker."""

    __tablename__ = "login_throttle"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer)


class IdempotencyKeyRow(Base):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed to its repeats.

    ``digest`` is the SHA-256 of the token, method, path and key (the key itself is the
    caller's and is not kept); ``status`` is NULL while the first request is in flight."""

    __tablename__ = "idempotency_keys"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

def seed_state_counts(connection) -> None:
    """Insert the zero counter rows; called after CREATE TABLE and by the initial migration."""
    connection.execute(insert(StateCountRow.__table__),
                       [{"state": s.value, "sessions": 0} for s in State])


event.listen(StateCountRow.__table__, "after_create",
             lambda target, connection, **kw: seed_state_counts(connection))
