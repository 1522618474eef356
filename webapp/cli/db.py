"""``flask db`` when the store is ``memory://``.

Flask-Migrate is only bound to SQL stores, so without this the README's start command
(``flask --app wsgi db upgrade && gunicorn …``) would stop at "No such command 'db'" on
the memory store.  ``upgrade`` is honestly a no-op there (nothing persists, so there is
no schema), and it is the only migration command memory:// has.
"""
from __future__ import annotations

import click
from flask.cli import AppGroup

NO_SCHEMA = "RUNBOARD_DATABASE_URL is memory://: the memory store keeps no schema"

memory_db = AppGroup("db", help="Database migrations (nothing to migrate on memory://).")


@memory_db.command("upgrade", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def upgrade(args):
    """Nothing to upgrade: memory:// starts empty in every process."""
    click.echo(f"{NO_SCHEMA}; nothing to upgrade", err=True)
