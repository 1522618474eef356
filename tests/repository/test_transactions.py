"""How ``Transactions`` (``repositories/sql/engine.py``) begins a PostgreSQL transaction.

A plain read begins no transaction: a lookup by id is one round trip, each statement its
own snapshot.  A snapshot read and a write are one transaction each, and SQLAlchemy's own
connections of the engine (migrations) still get theirs.
"""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
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


def test_a_snapshot_is_repeatable_read_and_read_only(transactions):
    with transactions(write=False, snapshot=True) as cursor:
        assert cursor.execute_text("SHOW transaction_isolation")[0][0] == "repeatable read"
        assert cursor.execute_text("SHOW transaction_read_only")[0][0] == "on"
    with transactions(write=True) as cursor:                  # the same pooled connection
        assert cursor.execute_text("SHOW transaction_isolation")[0][0] == "read committed"
        assert cursor.execute_text("SHOW transaction_read_only")[0][0] == "off"


def test_a_failed_plain_read_leaves_the_connection_usable(transactions):
    with transactions(write=False) as cursor:
        with pytest.raises(psycopg.errors.UndefinedColumn):
            cursor.execute_text("SELECT no_such_column")
    with transactions(write=False) as cursor:                 # the pool's only connection
        assert cursor.execute_text("SELECT 1")[0][0] == 1


def test_sqlalchemy_connections_still_get_one_transaction_and_its_rollback(transactions):
    """Migrations and bulk loads run on SQLAlchemy connections of the same engine."""
    with transactions.engine.connect() as connection:
        connection.execute(text("CREATE TEMPORARY TABLE scratch (n int)"))
        connection.commit()
        connection.execute(text("INSERT INTO scratch VALUES (1)"))
        connection.execute(text("SELECT pg_sleep(0.001)"))
        assert connection.execute(text(SAME_TRANSACTION)).scalar()
        connection.rollback()
        assert connection.execute(text("SELECT count(*) FROM scratch")).scalar() == 0


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
