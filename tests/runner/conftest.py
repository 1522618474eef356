"""Runner fixtures: an app per store whose runner runs test kinds for real."""
from __future__ import annotations

import pytest

from runner_support import make_app
from webapp.store import close_repository


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runner.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def fresh_postgres_url(postgres_url):
    """The run's PostgreSQL database, emptied: runner tests count sessions."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        tables = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        for table in tables:
            if table == "state_counts":        # its rows are the counters: zero them, keep them
                connection.execute(text("UPDATE state_counts SET sessions = 0"))
            elif table != "alembic_version":
                connection.execute(text(f'TRUNCATE "{table}" CASCADE'))
    engine.dispose()
    return postgres_url


@pytest.fixture
def app_factory(store_url):
    apps = []

    def build(**settings):
        app = make_app(store_url, **settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_repository(app)


@pytest.fixture
def app(app_factory):
    return app_factory(RUNBOARD_STOP_GRACE="30s")
