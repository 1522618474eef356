"""One fixture, ``repo``, runs every contract test on memory, SQLite and PostgreSQL.

Stores get a fake clock so sweeps, retention and hourly rollups are tested by moving
time, never by sleeping.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from repositories.memory import MemorySessionRepository
from repositories.sql import SqlSessionRepository

BACKENDS = ["memory", "sqlite", "postgresql"]
SQL_BACKENDS = ["sqlite", "postgresql"]


class FakeClock:
    """A settable clock.  Each reading advances ``tick`` (one microsecond) so writes stay
    ordered; ``tick=timedelta(0)`` freezes it for tests of exact boundaries.  Readings are
    taken under a lock, so threads sharing one clock never see time go backwards."""

    def __init__(self, start=datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc),
                 tick=timedelta(microseconds=1)):
        self.now = start
        self.tick = tick
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += self.tick
            return self.now

    def advance(self, **kwargs) -> None:
        with self._lock:
            self.now += timedelta(**kwargs)

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.now = moment


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
    return request.getfixturevalue("empty_postgres")()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def make_repo(backend, clock, request, tmp_path):
    """Build an empty store of the current backend (options such as ``max_log_entries``
    or ``clock`` pass through); every store made is closed after the test.

    Memory and SQLite give a new, independent store on every call.  PostgreSQL shares the
    run's database: it is emptied on the first call of a test only, so a second call is a
    second handle on the same data rather than a silent wipe of the first.
    """
    made = []

    def make(**options):
        options.setdefault("clock", clock)
        if backend == "memory":
            repo = MemorySessionRepository(**options)
        elif backend == "sqlite":
            repo = SqlSessionRepository.from_url(f"sqlite:///{tmp_path / f'store{len(made)}.db'}", **options)
            repo.create_schema()
        else:
            empty = request.getfixturevalue("empty_postgres")
            url = empty() if not made else request.getfixturevalue("postgres_schema_url")
            repo = SqlSessionRepository.from_url(url, **options)
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.close()


@pytest.fixture
def repo(make_repo):
    return make_repo()


@pytest.fixture
def credentials(backend, repo, clock):
    """The credential store beside ``repo``: on a SQL store it shares its transactions."""
    from repositories.credentials import MemoryCredentialStore
    from repositories.sql.credentials import SqlCredentialStore

    if backend == "memory":
        return MemoryCredentialStore(clock=clock)
    return SqlCredentialStore(repo.transactions, clock=clock)
