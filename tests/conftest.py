"""Shared fixtures: fresh PostgreSQL databases per test run, SQLite files per test.

Every run (and every xdist worker) creates its own PostgreSQL database and drops it at the
end, so parallel or concurrent runs never see each other's data.  Without a reachable
server the PostgreSQL cases are skipped locally but fail under ``CI=true``.
"""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest

PG_ADMIN_URL = os.environ.get("RUNBOARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_connection():
    try:
        import psycopg

        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")


@contextlib.contextmanager
def _new_postgres_database(prefix: str):
    """Create a uniquely named database, yield its SQLAlchemy URL, drop it afterwards."""
    admin = _admin_connection()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a database created for this run (shared by its tests); dropped afterwards."""
    with _new_postgres_database("runboard_test") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_schema_url(postgres_url):
    """The run's PostgreSQL database with the schema created once."""
    from repositories.sql import SqlSessionRepository

    repo = SqlSessionRepository.from_url(postgres_url)
    repo.create_schema()
    repo.close()
    return postgres_url


@pytest.fixture(scope="session")
def empty_postgres(postgres_schema_url):
    """Return a function that empties the run's database and returns its URL (cheaper than
    a schema per test); one engine serves every test.  Every table of the models is
    emptied (sessions and logs, usage, workers, scheduler, tokens and users) except the
    per-state counters, which are zeroed."""
    from sqlalchemy import text

    from repositories.sql import make_engine
    from repositories.sql.models import Base, StateCountRow

    tables = ", ".join(table.name for table in Base.metadata.sorted_tables
                       if table is not StateCountRow.__table__)
    engine = make_engine(postgres_schema_url, pool_size=1, max_overflow=0)

    def empty() -> str:
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
            connection.execute(text("UPDATE state_counts SET sessions = 0"))
        return postgres_schema_url

    yield empty
    engine.dispose()


@pytest.fixture
def empty_postgres_url():
    """URL of a database created for one test, e.g. to run migrations from nothing."""
    with _new_postgres_database("runboard_empty") as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url():
    """URL of a database created for one test module, e.g. for a server its tests share."""
    with _new_postgres_database("runboard_module") as url:
        yield url


@pytest.fixture
def postgres_admin():
    """An autocommit connection to the server's admin database, e.g. to take a test's own
    database offline for a moment (``ALTER DATABASE … ALLOW_CONNECTIONS``)."""
    with _admin_connection() as admin:
        yield admin


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'runboard.db'}"


# Helper modules at the top of tests/ (job_support, …) importable from every subfolder:
# the tests are not a package.
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
