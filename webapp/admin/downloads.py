"""TXT and JSON log downloads for the panel: the API's own streaming formatters, behind
the admin login instead of a bearer token."""
from __future__ import annotations

from flask import Response

from ..api.logs import DOWNLOAD_BATCH, _json_lines, _text_lines
from ..store import get_repository
from . import bp


@bp.get("/sessions/<session_id>/download.<any(txt, json):fmt>")
def download_logs(session_id, fmt):
    """Streamed in batches, whatever the log size; the header has the stored state."""
    session = get_repository().get(session_id)
    entries = get_repository().iter_logs(session_id, batch_size=DOWNLOAD_BATCH)
    if fmt == "json":
        body, mimetype = _json_lines(session.to_dict(include_cost=True), entries), "application/json"
    else:
        body, mimetype = _text_lines(session, entries), "text/plain; charset=utf-8"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="runboard-{session.id}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    return response
