"""Engines, and the one transaction context manager every SQL store method goes through.

On both stores the driver begins nothing by itself (sqlite3's implicit BEGIN is off,
psycopg's connections are in autocommit) and every transaction starts with a BEGIN of
ours, which says what the transaction is: a plain read needs none, so a lookup by id is
one round trip; a snapshot is PostgreSQL's read-only REPEATABLE READ.  SQLAlchemy's own
connections (migrations, bulk loads) get a BEGIN from the ``begin`` event, so they keep
one transaction and its rollback.

SQLite needs two more adjustments to be a safe multi-threaded, multi-process store:
* a write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front
  (waiting up to ``busy_timeout``) instead of failing with "database is locked" when a
  read transaction later tries to upgrade;
* WAL lets readers proceed beside the one writer and makes every read transaction a
  point-in-time snapshot; ``synchronous=NORMAL`` keeps acknowledged commits across a
  process crash (kill -9) — only an OS crash or power loss can lose the last commits.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

from .. import jsontext
from ..errors import ConfigurationError
from .compiled import Cursor, Plans
from .writer import SqliteWriter

BUSY_TIMEOUT_MS = 30_000


def _casefold(text):
    return None if text is None else text.casefold()


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    # SQLite's lower() folds ASCII only; label search needs "RÉSUMÉ" to match "résumé".
    dbapi_connection.create_function("runboard_casefold", 1, _casefold, deterministic=True)
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={BUSY_TIMEOUT_MS}",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _postgresql_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.autocommit = True       # we issue BEGIN ourselves


def _on_begin(connection: Connection) -> None:
    # For SQLAlchemy connections (migrations, bulk loads): the store's own transactions
    # begin on the driver cursor (``Transactions``).
    connection.connection.driver_connection.execute("BEGIN")


def prepare_engine(engine: Engine) -> Engine:
    """Install the connection listeners once per engine.  Idempotent."""
    on_connect = _sqlite_on_connect if engine.dialect.name == "sqlite" else _postgresql_on_connect
    if not event.contains(engine, "connect", on_connect):
        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", _on_begin)
    return engine


def engine_options(url: str) -> dict:
    """Engine keyword arguments for a URL; shared by ``make_engine`` and the Flask app."""
    codec = {"json_serializer": jsontext.dumps, "json_deserializer": jsontext.loads}
    if url.startswith("sqlite:"):
        # Every transaction here ends in an explicit COMMIT or ROLLBACK, so the pool's own
        # rollback-on-return would only add a call to each operation.
        return {**codec, "connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
                "pool_size": 10, "max_overflow": 20, "pool_reset_on_return": None}
    if url.startswith("postgresql"):
        # Sessions in UTC so timestamps need no conversion.  No pre-ping (a round trip per
        # operation): a connection the server dropped fails one call, and the pool replaces
        # it.  No rollback on return: every transaction ends in its own COMMIT or ROLLBACK.
        return {**codec, "pool_size": 10, "max_overflow": 20, "pool_reset_on_return": None,
                "connect_args": {"options": "-c timezone=UTC"}}
    raise ConfigurationError(
        "RUNBOARD_DATABASE_URL: unsupported scheme; use memory://, sqlite:///path.db "
        "or postgresql+psycopg://…")


def make_engine(url: str, **options) -> Engine:
    """Create a prepared engine for a ``sqlite:///`` or ``postgresql+psycopg://`` URL."""
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return prepare_engine(create_engine(url, **{**engine_options(url), **options}))


class Transactions:
    """The one way store methods open a transaction: ``with transactions(write=...) as cursor``.

    The block runs on a driver connection checked out of the engine's pool, commits when
    it ends, rolls back if it raises, and always returns the connection to the pool; its
    statements are Core statements run through ``compiled.Cursor``.  ``write`` takes
    SQLite's write lock at BEGIN; ``snapshot`` makes several SELECTs see one consistent
    state (SQLite: a read transaction, in WAL a point-in-time view; PostgreSQL: read-only
    REPEATABLE READ).  A plain read begins no transaction on either store, so each of its
    statements is its own snapshot (as it would be under PostgreSQL's READ COMMITTED) and a
    lookup by id on PostgreSQL is one round trip, not BEGIN, SELECT and COMMIT.

    SQLite admits one writer, and writers queue for it before ``BEGIN IMMEDIATE`` rather
    than in SQLite's busy handler (``SqliteWriter``).  Every store on one engine (sessions,
    credentials) shares one ``Transactions``, so a process has one such queue per database.
    """

    def __init__(self, engine: Engine):
        self.engine = prepare_engine(engine)
        self.plans = Plans(engine)
        self._driver_error = engine.dialect.loaded_dbapi.Error
        self._open = threading.local()         # this thread's open write transaction, if any
        sqlite = engine.dialect.name == "sqlite"
        self._writer = SqliteWriter(engine.url.database) if sqlite else contextlib.nullcontext()
        if sqlite:
            self._begin = {(True, False): "BEGIN IMMEDIATE", (True, True): "BEGIN IMMEDIATE",
                           (False, True): "BEGIN", (False, False): None}
        else:
            self._begin = {(True, False): "BEGIN", (True, True): "BEGIN",
                           (False, True): "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                           (False, False): None}

    @contextlib.contextmanager
    def __call__(self, *, write: bool, snapshot: bool = False) -> Iterator[Cursor]:
        """Inside a write transaction this thread already has open, the block joins it (a
        request run once under its idempotency key: its operation and its kept answer
        commit together or not at all)."""
        joined = getattr(self._open, "cursor", None)
        if joined is not None:
            yield joined
            return
        after: list = []
        with self._transaction(write, snapshot, after) as cursor:
            yield cursor
        for action in after:                   # committed, the connection and the lock released
            action()

    @contextlib.contextmanager
    def _transaction(self, write: bool, snapshot: bool, after: list) -> Iterator[Cursor]:
        with self._writer if write else contextlib.nullcontext():
            try:
                connection = self.engine.raw_connection()
            except self._driver_error as exc:
                raise self._wrapped(exc, None) from exc
            cursor = None
            try:
                cursor = Cursor(connection.cursor(), self.plans)
                begin = self._begin.get((write, snapshot))
                if begin is not None:
                    cursor.execute_text(begin)
                if write:
                    self._open.cursor, self._open.after = cursor, after
                yield cursor
                cursor.close()         # an unfinished SELECT would pin SQLite's read snapshot
                connection.commit()
            except self._driver_error as exc:
                self._discard(connection, exc)
                raise self._wrapped(exc, cursor) from exc
            except BaseException:
                connection.rollback()
                raise
            finally:
                if write:
                    self._open.cursor = self._open.after = None
                connection.close()     # back to the pool (a discarded one is replaced)

    def after_commit(self, action) -> None:
        """Run ``action`` once this thread's open write transaction has committed (now,
        without one): a job handed to a runner thread must find its session stored."""
        if getattr(self._open, "cursor", None) is None:
            action()
        else:
            self._open.after.append(action)

    def _discard(self, connection, exc: Exception) -> None:
        """Roll back; a connection the server dropped is invalidated instead, so the pool
        opens a new one rather than handing the dead one out again."""
        if self.engine.dialect.is_disconnect(exc, connection.dbapi_connection, None):
            connection.invalidate(exc)
            return
        with contextlib.suppress(self._driver_error):
            connection.rollback()

    def _wrapped(self, exc: Exception, cursor):
        """The driver's error as SQLAlchemy's (``OperationalError``, ``IntegrityError``, …),
        as the library's own execution path would raise it."""
        return DBAPIError.instance(cursor.sql if cursor else None, None, exc, self._driver_error,
                                   hide_parameters=True, dialect=self.engine.dialect)
