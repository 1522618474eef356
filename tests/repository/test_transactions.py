"""How ``Transactions`` (``repositories/sql/engine.py``) begins a PostgreSQL transaction.

A plain read runs in autocommit: a lookup by id is one round trip, each statement its own
snapshot.  A snapshot read and a write stay one transaction, and the pool's connections go
back in the driver's default mode, which the app's other users of the engine (migrations)
rely on.
"""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from repositories.sql import Transactions, make_engine

SAME_TRANSACTION = "SELECT statement_timestamp() > transaction_timestamp()"


@pytest.fixture
def transactions(postgres_url):
    engine = make_engine(postgres_url, pool_size=1, max_overflow=0)
    yield Transactions(engine)
    engine.dispose()


def _second_statement_shares_a_transaction(cursor) -> bool:
    cursor.execute_text("SELECT pg_sleep(0.001)")
    return cursor.execute_text(SAME_TRANSACTION)[0][0]


def test_a_plain_read_begins_no_transaction(transactions):
    with transactions(write=False) as cursor:
        assert cursor.execute_text("SELECT now() = statement_timestamp()")[0][0]
        assert not _second_statement_shares_a_transaction(cursor)


@pytest.mark.parametrize("kind", [{"write": True}, {"write": False, "snapshot": True}])
def test_writes_and_snapshots_are_one_transaction(transactions, kind):
    with transactions(**kind) as cursor:
        assert _second_statement_shares_a_transaction(cursor)


def test_a_connection_goes_back_to_the_pool_out_of_autocommit(transactions):
    with transactions(write=False) as cursor:
        cursor.execute_text("SELECT 1")
    connection = transactions.engine.raw_connection()      # the pool's only connection
    try:
        assert connection.driver_connection.autocommit is False
    finally:
        connection.close()
    with transactions(write=False) as cursor:                # and a failed plain read, too
        with pytest.raises(psycopg.errors.UndefinedColumn):
            cursor.execute_text("SELECT no_such_column")
    connection = transactions.engine.raw_connection()
    try:
        assert connection.driver_connection.autocommit is False
    finally:
        connection.close()


def test_a_plain_read_on_a_dropped_connection_fails_and_the_next_one_works(transactions):
    with transactions(write=False) as cursor:
        pid = cursor.execute_text("SELECT pg_backend_pid()")[0][0]
    with psycopg.connect(transactions.engine.url.render_as_string(hide_password=False)
                         .replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(OperationalError):
        with transactions(write=False) as cursor:             # the pool's dead connection
            cursor.execute_text("SELECT 1")
    with transactions(write=False) as cursor:                 # invalidated and replaced
        assert cursor.execute_text("SELECT 1")[0][0] == 1
