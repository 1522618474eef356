"""Workers: heartbeat health of every known worker process."""
from __future__ import annotations

from flask import render_template

from repositories.records import utcnow

from ..api.admin import _stale_after
from ..api.views import worker_json
from ..store import get_repository
from . import bp


@bp.get("/workers")
def workers():
    """Stale (highlighted) = last seen longer ago than 2 × RUNBOARD_HEARTBEAT_TIMEOUT,
    decided by the same helper as GET /api/v1/workers."""
    now, stale_after = utcnow(), _stale_after()
    rows = [(worker, worker_json(worker, now, stale_after)["status"]) for worker in get_repository().list_workers()]
    return render_template("admin/workers.html", rows=rows, now=now, stale_after=stale_after)
