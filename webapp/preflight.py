"""Start-up checks for gunicorn's master, run before any worker is forked.

Workers build the app themselves (no ``preload_app``), so a setting that only failed
there would make gunicorn respawn worker after worker.  The master runs these checks
first and stops with one line instead.  It opens the database once to prove it is
reachable and disposes of the engine, so no connection is inherited by a forked worker.
It also loads the kinds (RUNBOARD_KINDS and the ``runboard.kinds`` entry points), so
their modules are imported in the master too, before the workers are forked.
"""
from __future__ import annotations

import os
from typing import Mapping

from repositories.errors import ConfigurationError
from repositories.sql import make_engine

from . import INSTANCE_PATH, registered_kinds
from .settings import Settings, load_settings
from .store import check_reachable, sqlalchemy_url


def check_workers(settings: Settings, workers: int, source: str = "WEB_CONCURRENCY") -> None:
    """The memory store lives inside one process: a second worker would see other data.
    ``source`` names where the worker count came from (the variable or ``--workers``)."""
    if settings.store == "memory" and workers > 1:
        raise ConfigurationError(
            f"{source}: the memory store lives inside one process; run 1 worker "
            f"(got {workers}) or use sqlite:/// or postgresql+psycopg:// in RUNBOARD_DATABASE_URL")


def check_startup(environ: Mapping[str, str], workers: int) -> Settings:
    """Settings, worker count, the kinds and database reachability; ConfigurationError
    naming the variable (or the kind's entry point) on the first problem."""
    settings = load_settings(environ)
    check_workers(settings, workers)
    registered_kinds(settings)
    if settings.store != "memory":
        os.makedirs(INSTANCE_PATH, exist_ok=True)     # where relative SQLite paths live
        engine = make_engine(sqlalchemy_url(settings, INSTANCE_PATH))
        try:
            check_reachable(engine)
        finally:
            engine.dispose()
    return settings
