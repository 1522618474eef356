"""Runboard's Python client: report progress, logs and usage of any process to Runboard.

    import runboard
    rb = runboard.Client()          # RUNBOARD_URL, RUNBOARD_TOKEN
    with rb.track("etl.nightly", label="input.csv") as run:
        run.progress(current=1, total=10)
        run.log("info", "loaded", rows=120)

See docs/client.md in the Runboard repository.
"""
from __future__ import annotations

import contextvars
from typing import Optional

__version__ = "0.8.0"

from .client import Client, Run  # noqa: E402
from .handler import LogHandler  # noqa: E402

__all__ = ["Client", "LogHandler", "Run", "attach", "current_run", "track", "__version__"]

_default = None

#: The run of the task this thread (or context) is executing; set by integrations such as
#: ``runboard.celery.track_tasks`` around each task, None everywhere else.
_current_run: "contextvars.ContextVar[Optional[Run]]" = contextvars.ContextVar("runboard_current_run", default=None)


def current_run() -> Optional[Run]:
    """The ``Run`` of the tracked task running in this thread (a Celery task under
    ``runboard.celery.track_tasks``), or None outside one."""
    return _current_run.get()


def _client() -> Client:
    global _default
    if _default is None:
        _default = Client()
    return _default


def track(kind: str, **options) -> Run:
    """``Client().track(...)`` on a client made once from ``RUNBOARD_URL`` and ``RUNBOARD_TOKEN``."""
    return _client().track(kind, **options)


def attach(session_id: str) -> Run:
    """``Client().attach(...)`` on the same shared client as ``track``."""
    return _client().attach(session_id)
