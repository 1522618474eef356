"""Migrations produce exactly the models' schema, on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from repositories.sql.models import Base
from webapp import create_app
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
