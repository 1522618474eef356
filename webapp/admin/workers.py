"""Workers: heartbeat health of every known worker process."""
from __future__ import annotations

from flask import render_template

from repositories.records import utcnow

from ..api.views import stale_after
from ..api.views import worker_json
from ..store import get_repository
from . import bp


@bp.get("/workers")
def workers():
    """Stale (highlighted) = last seen longer ago than 2 × RUNBOARD_HEARTBEAT_TIMEOUT,
    decided by the same helper as GET /api/v1/workers."""
    now, threshold = utcnow(), stale_after()
    rows = [(worker, worker_json(worker, now, threshold)["status"]) for worker in get_repository().list_workers()]
    return render_template("admin/workers.html", rows=rows, now=now, stale_after=threshold)
