"""One fixture, ``repo``, runs every contract test on memory, SQLite and PostgreSQL.

Stores get a fake clock so sweeps, retention and hourly rollups are tested by moving
time, never by sleeping.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from repositories.memory import MemorySessionRepository
from repositories.sql import SqlSessionRepository

BACKENDS = ["memory", "sqlite", "postgresql"]
SQL_BACKENDS = ["sqlite", "postgresql"]


class FakeClock:
    """A settable clock; each reading advances one microsecond so writes stay ordered."""

    def __init__(self, start=datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)):
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(scope="session")
def postgres_schema_url(postgres_url):
    repo = SqlSessionRepository.from_url(postgres_url)
    repo.create_schema()
    repo.close()
    return postgres_url


def _empty_postgres(url: str) -> None:
    repo = SqlSessionRepository.from_url(url)
    with repo._engine.begin() as connection:
        connection.execute(text("TRUNCATE log_entries, sessions, usage_rollups, workers RESTART IDENTITY"))
        connection.execute(text("UPDATE state_counts SET sessions = 0"))
    repo.close()


@pytest.fixture
def sql_url(request, tmp_path):
    """A URL for an empty SQL store of the parametrised backend, with the schema in place."""
    backend = request.param if hasattr(request, "param") else "sqlite"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        repo = SqlSessionRepository.from_url(url)
        repo.create_schema()
        repo.close()
        return url
    url = request.getfixturevalue("postgres_schema_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def make_repo(backend, clock, request, tmp_path):
    """Build a fresh, empty store of the current backend; closed after the test."""
    made = []

    def make(**options):
        options.setdefault("clock", clock)
        if backend == "memory":
            repo = MemorySessionRepository(**options)
        elif backend == "sqlite":
            repo = SqlSessionRepository.from_url(f"sqlite:///{tmp_path / f'store{len(made)}.db'}", **options)
            repo.create_schema()
        else:
            url = request.getfixturevalue("postgres_schema_url")
            _empty_postgres(url)
            repo = SqlSessionRepository.from_url(url, **options)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.close()


@pytest.fixture
def repo(make_repo):
    return make_repo()
