"""TXT and JSON log downloads for the panel: the API's own streaming formatters, behind
the admin login instead of a bearer token."""
from __future__ import annotations

from ..downloads import download_response
from ..store import get_repository
from . import bp


@bp.get("/sessions/<session_id>/download.<any(txt, json):fmt>")
def download_logs(session_id, fmt):
    """Streamed in batches, whatever the log size; the header has the stored state."""
    session = get_repository().get(session_id)
    return download_response(session, session.to_dict(include_cost=True), fmt)
