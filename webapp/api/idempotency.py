"""``Idempotency-Key`` on every POST under /api/v1 (the IETF draft's header).

A repeat by the same token of the same method and path with the same key gets the first
request's status and body back, and nothing is done again; the answer is kept in the
store, so any worker on any host replays it.  The key is never stored: the store keeps a
SHA-256 of token, method, path and key, and one of the body, to tell a repeat from a new
request under an old key (422).  Only 2xx answers are kept; a refused or failed first
request is forgotten, and its repeat runs anew.
"""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Callable

from flask import current_app, request

from repositories.errors import ValidationError
from repositories.jsontext import loads
from repositories.validation import session_key

from ..store import get_repository

HEADER = "Idempotency-Key"
#: 1-255 visible ASCII characters.
KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: How long an answer is replayed (never past its session: cleanup removes it with it).
KEEP = timedelta(hours=24)


def key_of(incoming) -> str | None:
    """The request's key, None without one; a 400 naming the header when malformed."""
    key = incoming.headers.get(HEADER)
    if key is None:
        return None
    if not KEY.fullmatch(key):
        raise ValidationError(HEADER, "must be 1 to 255 visible ASCII characters")
    return key


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def once(principal, key: str, raw: bytes, session_id: str | None, run: Callable, *, creates_session: bool):
    """Run the view once per key; a repeat gets the first answer (``Idempotent-Replayed``).
    The kept answer goes with the session of the path, or with the one the answer is
    (``creates_session``: ``POST /sessions``).  On the SQL stores the view's writes and
    the kept answer are one transaction (see ``SessionRepository.once``)."""
    digest = _digest(principal.token_id or "bootstrap-admin-token", request.method, request.path, key)
    with get_repository().once(digest, hashlib.sha256(raw).hexdigest(), keep=KEEP) as claim:
        if claim.replay is not None:
            response = current_app.response_class(claim.replay.body, status=claim.replay.status,
                                                  mimetype="application/json")
            response.headers["Idempotent-Replayed"] = "true"
            return response
        response = current_app.make_response(run())
        if 200 <= response.status_code < 300:
            body = response.get_data(as_text=True)
            claim.settle(response.status_code, body, session_key(session_id) if session_id
                         else _created_session(body) if creates_session else None)
        return response


def _created_session(body: str) -> str | None:
    """The id of the session a ``POST /sessions`` answer is."""
    answer = loads(body)
    return answer["id"] if isinstance(answer, dict) and isinstance(answer.get("id"), str) else None
