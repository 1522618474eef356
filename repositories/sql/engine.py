"""Engines and the one transaction helper every SQL store method goes through.

SQLite needs two adjustments to be a safe multi-threaded, multi-process store:
* pysqlite's own implicit BEGIN is switched off and SQLAlchemy's ``begin`` event emits
  ours, so a write transaction can start with ``BEGIN IMMEDIATE``: it takes the write
  lock up front (waiting up to ``busy_timeout``) instead of failing with "database is
  locked" when a read transaction later tries to upgrade;
* WAL lets readers proceed beside the one writer and makes every snapshot a true
  point-in-time view; ``synchronous=NORMAL`` in WAL keeps acknowledged commits across a
  process crash (kill -9) — only an OS crash or power loss can lose the last commits.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event

from psycopg.types.json import set_json_loads

from . import jsontext
from ..errors import ConfigurationError

BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "runboard_begin"


def _casefold(text):
    return None if text is None else text.casefold()


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see _sqlite_on_begin
    # SQLite's lower() folds ASCII only; label search needs "RÉSUMÉ" to match "résumé".
    dbapi_connection.create_function("runboard_casefold", 1, _casefold, deterministic=True)
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={BUSY_TIMEOUT_MS}",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # Straight to the driver: this runs once per transaction on the hot path.
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.connection.driver_connection.execute(f"BEGIN {mode}")


def _postgres_on_connect(dbapi_connection, _record) -> None:
    # psycopg decodes json columns itself; the snapshot decodes ~3,600 documents per call.
    set_json_loads(jsontext.loads, dbapi_connection)


def prepare_engine(engine: Engine) -> Engine:
    """Install the connection listeners once per engine.  Idempotent."""
    if engine.dialect.name == "sqlite" and not event.contains(engine, "connect", _sqlite_on_connect):
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    elif engine.dialect.name == "postgresql" and not event.contains(engine, "connect", _postgres_on_connect):
        event.listen(engine, "connect", _postgres_on_connect)
    return engine


def engine_options(url: str) -> dict:
    """Engine keyword arguments for a URL; shared by ``make_engine`` and the Flask app."""
    if url.startswith("sqlite:"):
        # Every transaction here ends in an explicit COMMIT or ROLLBACK, so the pool's own
        # rollback-on-return would only add a call to each operation.
        return {"connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
                "pool_reset_on_return": None}
    if url.startswith("postgresql"):
        # Sessions in UTC so timestamps need no conversion; no pre-ping: it would add a
        # round trip to every operation, and a dropped connection fails one call instead.
        # No rollback on return either: every transaction here ends in its own COMMIT or
        # ROLLBACK, and the reset would cost each operation a round trip.
        return {"pool_size": 10, "max_overflow": 20, "pool_reset_on_return": None,
                "connect_args": {"options": "-c timezone=UTC"}}
    raise ConfigurationError(
        "RUNBOARD_DATABASE_URL: unsupported scheme; use memory://, sqlite:///path.db "
        "or postgresql+psycopg://…")


def make_engine(url: str, **options) -> Engine:
    """Create a prepared engine for a ``sqlite:///`` or ``postgresql+psycopg://`` URL."""
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return prepare_engine(create_engine(url, **{**engine_options(url), **options}))


class _ThreadConnection:
    """Holds a thread's own connection in its local storage; when the thread ends, the
    holder goes and its finalizer closes the connection."""
    __slots__ = ("connection", "__weakref__")

    def __init__(self, connection):
        self.connection = connection


class Transactions:
    """The one way store methods open a transaction.

    ``transactions(write=...)`` commits when the block ends, rolls back if it raises, and
    always returns the connection to the pool.  ``write`` takes SQLite's write lock at
    BEGIN; ``snapshot`` asks PostgreSQL for a read-only REPEATABLE READ transaction so
    several SELECTs see one consistent state (SQLite's WAL read transaction already does).
    The option-carrying engines are built once because this sits on every hot path.
    """

    def __init__(self, engine: Engine):
        self.engine = prepare_engine(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite admits one writer; threads of this process queue here, in order, rather
        # than in SQLite's busy handler, which polls with sleeps of up to 100 ms and turns
        # contention into long tail latency.  Other processes still meet the busy timeout.
        self._writer = threading.Lock() if self._sqlite else contextlib.nullcontext()
        self._local = threading.local()
        # Per-thread PostgreSQL connections: each closes when its thread ends (the finalizer
        # of the holder kept in the thread's local storage) or at close(), whichever is first.
        self._finalizers: list[weakref.finalize] = []
        self._finalizers_lock = threading.Lock()
        if self._sqlite:
            self._write = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            self._snapshot = engine
        else:
            self._write = engine
            self._snapshot = engine.execution_options(isolation_level="REPEATABLE READ",
                                                      postgresql_readonly=True)

    @contextlib.contextmanager
    def __call__(self, *, write: bool, snapshot: bool = False) -> Iterator[Connection]:
        engine = self._write if write else self._snapshot if snapshot else self.engine
        with (self._writer if write else contextlib.nullcontext()), engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def cursor(self, *, write: bool = True, snapshot: bool = False, single: bool = False,
               relaxed: bool = False) -> Iterator:
        """Driver-level twin of ``__call__`` for the hot paths (see ``hotpath``): same pool,
        same locking and snapshot rules, commit on success, roll back on error.

        ``single`` marks work whose every statement may be its own transaction: SQLite runs
        them in autocommit (a statement is atomic and its own consistent snapshot), saving
        the BEGIN and COMMIT steps, each of which gives up the GIL.  Writers of this process
        still queue on the writer lock.  ``relaxed`` marks a write whose loss in a *database server* crash
        is harmless (a progress report superseded by the next one): PostgreSQL commits it
        without waiting for the WAL flush.  It is still atomic, and an application crash
        loses nothing.
        """
        if single and not write and not self._sqlite:
            # One read: autocommit on the thread's own connection, one round trip.
            cursor = self._relaxed_cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            return
        with self._writer if write else contextlib.nullcontext():
            connection, pooled = self._driver_connection()
            try:
                # PostgreSQL: pipeline mode sends BEGIN, SET and every statement up to the
                # first fetch in one round trip instead of one each.
                with contextlib.nullcontext() if self._sqlite else connection.driver_connection.pipeline():
                    cursor = connection.cursor()
                    if self._sqlite:
                        if not single:
                            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    elif snapshot:
                        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    elif relaxed:
                        cursor.execute("SET LOCAL synchronous_commit TO OFF")
                    yield cursor
                    cursor.close()         # an unfinished SELECT would pin SQLite's read snapshot
                    connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                if pooled:
                    connection.close()

    def read_row(self, statement: str, params: tuple):
        """The first row of one read statement (or None) by the cheapest route each
        database has: the thread's own connection in autocommit, with no context manager
        around it (``get`` is the most frequent read)."""
        if self._sqlite:
            return self._sqlite_row(statement, params)
        return self._first_row(self._relaxed_cursor(), statement, params)

    def relaxed_row(self, statement: str, params: tuple):
        """``write_row`` for a write whose loss in a *database server* crash is harmless
        (a progress report the next one supersedes): PostgreSQL runs it in autocommit on
        the thread's own connection, whose commits do not wait for the WAL flush — one
        round trip, no BEGIN, SET or COMMIT."""
        if self._sqlite:
            return self.write_row(statement, params)
        return self._first_row(self._relaxed_cursor(), statement, params)

    def write_row(self, statement: str, params: tuple):
        """The first row of one writing statement (``… RETURNING``, or None) as its own
        transaction: SQLite in autocommit on the thread's connection, queued on the writer
        lock (the progress report is the most frequent write); PostgreSQL through ``cursor``."""
        if self._sqlite:
            with self._writer:
                return self._sqlite_row(statement, params)
        with self.cursor() as cursor:
            return self._first_row(cursor, statement, params)

    def _relaxed_cursor(self):
        """PostgreSQL: a cursor on this thread's own autocommit connection with
        ``synchronous_commit = off``, detached from the pool (a checkout and two autocommit
        switches cost more than the statement).  Only single reads and ``relaxed_row`` use
        it, so nothing that must be durable ever commits on it."""
        holder = getattr(self._local, "relaxed", None)
        if holder is None or holder.connection.closed:
            pooled = self.engine.raw_connection()
            connection = pooled.driver_connection
            pooled.detach()
            connection.autocommit = True
            connection.execute("SET synchronous_commit TO OFF")
            holder = self._local.relaxed = _ThreadConnection(connection)
            finalizer = weakref.finalize(holder, connection.close)
            with self._finalizers_lock:
                self._finalizers = [f for f in self._finalizers if f.alive] + [finalizer]
        return holder.connection.cursor()

    def close(self) -> None:
        """Close the per-thread PostgreSQL connections (the pool's are the engine's)."""
        with self._finalizers_lock:
            finalizers, self._finalizers = self._finalizers, []
        for finalizer in finalizers:
            finalizer()

    def _sqlite_row(self, statement: str, params: tuple):
        cursor = self._driver_connection()[0].cursor()
        try:
            return self._first_row(cursor, statement, params)
        finally:
            cursor.close()

    @staticmethod
    def _first_row(cursor, statement: str, params: tuple):
        cursor.execute(statement, params)
        return cursor.fetchone()

    def _driver_connection(self):
        """SQLite: one connection per thread, detached from the pool and kept for the
        thread's life (a checkout costs more than the read it serves; a SQLite connection
        is only a file handle).  PostgreSQL: the pool, whose connections are server
        processes worth sharing."""
        if not self._sqlite:
            return self.engine.raw_connection(), True
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self.engine.raw_connection()
            connection.detach()
            self._local.connection = connection
        return connection, False
