"""Migrations produce exactly the models' schema, on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from repositories.sql.models import Base
from webapp import MIGRATIONS, create_app
from webapp.extensions import db


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request):
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "empty_postgres_url")


def test_upgrade_of_an_empty_database_matches_the_models_exactly(empty_database_url):
    app = create_app({"RUNBOARD_DATABASE_URL": empty_database_url, "RUNBOARD_SCHEDULER": "off"})
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            counts = dict(connection.execute(text("SELECT state, sessions FROM state_counts")).all())
        assert counts == {"pending": 0, "running": 0, "completed": 0, "failed": 0, "stopped": 0}
        db.engine.dispose()


def test_downgrade_removes_every_table(empty_database_url):
    app = create_app({"RUNBOARD_DATABASE_URL": empty_database_url, "RUNBOARD_SCHEDULER": "off"})
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        db.engine.dispose()
    assert tables == set()


ROOT = Path(__file__).resolve().parents[1]


def _flask(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env={**os.environ, "RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off"},
                          capture_output=True, text=True, timeout=120)


def test_the_readme_command_creates_the_schema_and_is_safe_to_repeat(empty_database_url):
    for _ in range(2):
        result = _flask("db", "upgrade", url=empty_database_url)
        assert result.returncode == 0, result.stderr
    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            head = ScriptDirectory(MIGRATIONS).get_current_head()
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
            assert connection.execute(text("SELECT count(*) FROM state_counts")).scalar_one() == 5
    finally:
        engine.dispose()


def test_db_upgrade_with_bad_configuration_prints_one_line():
    result = _flask("db", "upgrade", url="sqlite:///")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("runboard: configuration error: RUNBOARD_DATABASE_URL: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_revisions_form_one_line_of_history():
    script = ScriptDirectory(MIGRATIONS)
    assert len(script.get_heads()) == 1 and len(script.get_bases()) == 1


def test_the_daily_rollups_are_filled_from_the_hourly_ones_on_upgrade(empty_database_url):
    from datetime import datetime, timedelta, timezone

    from repositories.sql import SqlSessionRepository
    from repositories.sql.rows import usage_rollups

    app = create_app({"RUNBOARD_DATABASE_URL": empty_database_url, "RUNBOARD_SCHEDULER": "off"})
    day = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with app.app_context():
        upgrade(revision="0005")
        with db.engine.begin() as connection:
            connection.execute(usage_rollups.insert(), [
                {"owner": "ana", "kind": "k", "engine": "", "hour": day + timedelta(hours=h), "sessions": 1,
                 "tokens": 10 * h, "cost": 0.5} for h in (1, 5, 23)] + [
                {"owner": "ana", "kind": "k", "engine": "", "hour": day + timedelta(days=1, hours=2), "sessions": 2,
                 "tokens": 7, "cost": 1.0}])
        upgrade()
        db.engine.dispose()
    repository = SqlSessionRepository.from_url(empty_database_url)
    try:
        by_day = [(r.key, r.sessions, r.tokens, r.cost) for r in repository.usage(by="day", since=day)]
        by_hour_since = [(r.key, r.tokens) for r in repository.usage(by="day", since=day + timedelta(hours=3))]
    finally:
        repository.close()
    assert by_day == [("2026-03-01", 3, 290, 1.5), ("2026-03-02", 2, 7, 1.0)]
    assert by_hour_since == [("2026-03-01", 280), ("2026-03-02", 7)]      # hours since 03:00
