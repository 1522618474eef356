"""Log routes: append, page through, and stream a download of any size in flat memory."""
from __future__ import annotations

from ..downloads import download_response
from ..store import get_repository
from . import bp
from . import schemas as s
from .auth import ADMIN, WORKER, check_visible, visible_session
from .endpoints import endpoint
from .views import respond, session_json

TEN_MIB = 10 * 1024 * 1024


@endpoint(bp, "POST", "/sessions/{session_id}/logs", summary="Append 1–1000 log entries",
          roles=frozenset({ADMIN, WORKER}), body=s.LogBatch, response=s.AppendOut, status=201,
          errors=(400, 401, 403, 404, 409, 413, 415), max_body=TEN_MIB)
def append_logs(principal, session_id, body: s.LogBatch):
    appended = get_repository().append_logs(session_id, body.entries)
    return respond({"first_seq": appended.first_seq, "last_seq": appended.last_seq}, 201)


@endpoint(bp, "GET", "/sessions/{session_id}/logs", summary="Read log entries after a seq",
          query=s.LogsQuery, response=s.LogPageOut, errors=(400, 401, 404))
def read_logs(principal, session_id, query: s.LogsQuery):
    check_visible(principal, session_id)
    page = get_repository().read_logs(session_id, after=query.after, limit=query.limit)
    return respond({"entries": [e.to_dict() for e in page.entries], "next_after": page.next_after})


@endpoint(bp, "GET", "/sessions/{session_id}/logs/download", summary="Download all log entries",
          query=s.DownloadQuery, response=s.LogDownloadOut, errors=(400, 401, 404))
def download_logs(principal, session_id, query: s.DownloadQuery):
    """Streamed in batches: memory stays flat whatever the log size.  The header carries the
    session's stored state as read when the download began."""
    session = visible_session(principal, session_id)
    return download_response(session, session_json(session, principal), query.format)
