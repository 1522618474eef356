"""Log downloads, TXT and JSON, for the API and the admin panel alike: streamed in
batches (memory stays flat whatever the log size), the header carrying the session's
stored state as read when the download began."""
from __future__ import annotations

import json

from flask import Response

from repositories.records import Session, iso

from .logtext import log_line, one_line
from .store import get_repository

DOWNLOAD_BATCH = 1000


def download_response(session: Session, shown: dict, fmt: str) -> Response:
    """An attachment ``runboard-<id>.<fmt>``; ``shown`` is the session as the caller may
    see it (users never see cost)."""
    entries = get_repository().iter_logs(session.id, batch_size=DOWNLOAD_BATCH)
    if fmt == "json":
        body, mimetype = json_lines(shown, entries), "application/json"
    else:
        body, mimetype = text_lines(session, entries), "text/plain"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="runboard-{session.id}.{fmt}"'
    return response


def text_lines(session: Session, entries):
    header = [("session", session.id), ("kind", session.kind), ("label", session.label),
              ("owner", session.owner), ("state", session.state.value),
              ("created_at", iso(session.created_at)), ("started_at", iso(session.started_at)),
              ("finished_at", iso(session.finished_at)), ("log_count", session.log_count)]
    yield "".join(f"# {key}: {one_line(value)}\n" for key, value in header) + "\n"
    chunk = []
    for entry in entries:
        chunk.append(log_line(entry) + "\n")
        if len(chunk) >= DOWNLOAD_BATCH:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def json_lines(session: dict, entries):
    yield '{"session": ' + json.dumps(session) + ', "entries": ['
    chunk, first = [], True
    for entry in entries:
        chunk.append(("" if first else ",") + json.dumps(entry.to_dict()))
        first = False
        if len(chunk) >= DOWNLOAD_BATCH:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk) + "]}"
