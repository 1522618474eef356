"""Shared fixtures: a fresh PostgreSQL database per test run, SQLite files per test.

Every run (and every xdist worker) creates its own PostgreSQL database and drops it at the
end, so parallel or concurrent runs never see each other's data.  Without a reachable
server the PostgreSQL cases are skipped locally but fail under ``CI=true``.
"""
from __future__ import annotations

import os
import uuid

import pytest

PG_ADMIN_URL = os.environ.get("RUNBOARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_dsn(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def postgres_url():
    """SQLAlchemy URL of a database created for this run; dropped afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    name = f"runboard_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _pg_dsn(name).replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'runboard.db'}"
