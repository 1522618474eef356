"""The ``flask --app wsgi …`` commands, one module per group of nouns.

``common`` holds what the groups share and imports none of them, so the package has no
import cycle: ``credentials`` (tokens, users) and ``sessions`` (sessions, usage) import
``common``; only ``register_cli`` here knows them all.
"""
from __future__ import annotations

from flask import Flask

from .credentials import tokens, users
from .db import memory_db
from .sessions import sessions, usage


def register_cli(app: Flask) -> None:
    """Every group on every store (each command says itself when it needs SQL), plus
    ``db upgrade`` on memory://, where Flask-Migrate is not bound."""
    for group in (tokens, users, sessions, usage):
        app.cli.add_command(group)
    if app.config["RUNBOARD"].store == "memory":
        app.cli.add_command(memory_db)
