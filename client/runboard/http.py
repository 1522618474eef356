"""The client's transport: Runboard's JSON API over httpx.

Every write carries an ``Idempotency-Key`` fixed when its request was formed, and its body
is encoded once: a retry is byte for byte the first attempt, so the server answers it from
its memory of the first (same status, same body) instead of doing the work again.  That
is what makes it safe to retry after a timeout, when the work may well have been done.

Answers are sorted into what the reporting core understands: ``RetryLater`` for what time
can fix (no connection, a timeout, 5xx, 429 with its ``Retry-After``, a repeat still in
flight), ``SessionGone`` when the session is finished or removed, ``LogsFull`` for the
session's log cap, and ``Rejected`` for everything retrying cannot change.
"""
from __future__ import annotations

import email.utils
import json
import math
import time
from datetime import datetime, timezone
from typing import Any, Optional

import httpx

from . import __version__
from .reporting import LogsFull, Op, Rejected, RetryLater, SessionGone, Transport

PATHS = {
    "create": "/api/v1/sessions",
    "start": "/api/v1/sessions/{id}/start",
    "logs": "/api/v1/sessions/{id}/logs",
    "report": "/api/v1/sessions/{id}/progress",
    "finish": "/api/v1/sessions/{id}/finish",
}


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def _jsonable(value: Any) -> Any:
    """What ``json`` cannot encode is sent as its ``repr``: a report is never refused
    for a field the job could not have known was unserialisable."""
    return repr(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode(body: Any) -> bytes:
    """Compact JSON; NaN and infinities (which JSON has not) become strings."""
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_jsonable)
    except ValueError:
        text = json.dumps(_finite(body), separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    return text.encode("utf-8")


def entry_body(entry: tuple) -> dict:
    level, message, fields, at = entry
    body = {"level": level, "message": message, "at": iso_time(at)}
    if fields:
        body["fields"] = fields
    return body


def body_of(op: Op) -> Any:
    """The JSON document an op sends."""
    if op.kind == "logs":
        return {"entries": [entry_body(entry) for entry in op.payload]}
    if op.kind == "report":
        return {key: value for key, value in op.payload.items() if value is not None}
    return op.payload


def retry_after(response: httpx.Response) -> Optional[float]:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date), if sent."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _error(response: httpx.Response) -> dict:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def describe(response: httpx.Response) -> str:
    error = _error(response)
    return f"{response.status_code} {error.get('code', response.reason_phrase)}: {error.get('message', '')}".rstrip(": ")


class HttpTransport(Transport):
    def __init__(self, url: str, token: str, *, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"runboard-client/{__version__}"})

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryLater(describe(response), retry_after(response))
        return response

    def send(self, session_id: Optional[str], op: Op) -> Any:
        if op.wire is None:
            op.wire = encode(body_of(op))
        path = PATHS[op.kind].format(id=session_id)
        response = self._request("POST", path, content=op.wire,
                                 headers={"Content-Type": "application/json", "Idempotency-Key": op.key})
        if response.is_success:
            answer = response.json()
            if op.kind == "create":
                return answer["id"]
            if op.kind == "logs":
                return answer["last_seq"]
            if op.kind == "report":
                return bool(answer.get("stop_requested"))
            return answer
        error = _error(response)
        code = error.get("code")
        if response.status_code == 409:
            if code == "idempotency_key_in_flight":
                raise RetryLater(describe(response), retry_after(response) or 0.5)
            if code == "log_limit_exceeded" and isinstance(error.get("stored"), int) and isinstance(error.get("limit"), int):
                raise LogsFull(error["stored"], error["limit"])
            if op.kind == "start" and self.get(session_id).get("state") == "running":
                return None                    # started already (attach to a running session)
            raise SessionGone(describe(response))
        if response.status_code == 404:
            raise SessionGone(describe(response))
        raise Rejected(describe(response))

    def get(self, session_id: str) -> dict:
        """The stored session (for the stop flag and ``attach``)."""
        response = self._request("GET", f"/api/v1/sessions/{session_id}")
        if response.status_code == 404:
            raise SessionGone(describe(response))
        if not response.is_success:
            raise Rejected(describe(response))
        return response.json()
