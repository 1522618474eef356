"""The client's transport: Runboard's JSON API over urllib3.

urllib3 rather than httpx: the client's share of every request is spent in the job's own
process, and urllib3's is the smaller (docs/benchmarks.md, "Celery").

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
import time
from datetime import datetime, timezone
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

import orjson
import urllib3

from . import __version__
from .transport import LogsFull, Op, Rejected, RetryLater, SessionGone, Transport

PATHS = {
    "create": "/api/v1/sessions",
    "start": "/api/v1/sessions/{id}/start",
    "logs": "/api/v1/sessions/{id}/logs",
    "report": "/api/v1/sessions/{id}/progress",
    "finish": "/api/v1/sessions/{id}/finish",
}


OPTIONS = orjson.OPT_NON_STR_KEYS
#: Connections kept open to the server: one per thread that sends at the same moment (the
#: sender, jobs flushing or finishing); beyond it urllib3 opens extra ones and closes them.
POOL_SIZE = 32


def _jsonable(value: Any) -> Any:
    """What JSON cannot carry is sent as its ``repr``: a report is never refused for a
    field the job could not have known was unserialisable."""
    return repr(value)


def _within_64_bits(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {k: _within_64_bits(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_within_64_bits(v) for v in value]
    return value


def encode(body: Any) -> bytes:
    """Compact JSON, by orjson: the sender encodes every entry while the job runs, on the
    job's GIL, and the standard library's encoder took six times as long (see
    docs/benchmarks.md).  NaN and infinities become null (JSON has neither), integers
    past 64 bits their decimal text."""
    try:
        return orjson.dumps(body, default=_jsonable, option=OPTIONS)
    except TypeError:                          # orjson.JSONEncodeError: an integer past 64 bits
        return orjson.dumps(_within_64_bits(body), default=_jsonable, option=OPTIONS)


_second = (-1, "")                             # the last whole second formatted, and its text


def iso_time(epoch: float) -> str:
    """UTC ISO-8601 with microseconds and ``Z``; the date and time of day are formatted
    once per second, not once per entry."""
    global _second
    whole = int(epoch)
    micros = int((epoch - whole) * 1e6)
    second, text = _second
    if whole != second:
        text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return "%s.%06dZ" % (text, micros)


def stamped(entries: list) -> list:
    """The entries with ``at`` as text (in place: a batch sent again is already)."""
    for entry in entries:
        at = entry["at"]
        if type(at) is float:
            entry["at"] = iso_time(at)
    return entries


def body_of(op: Op) -> Any:
    """The JSON document an op sends."""
    if op.kind == "logs":
        return {"entries": stamped(op.payload)}
    if op.kind == "report":
        return {key: value for key, value in op.payload.items() if value is not None}
    return op.payload


def retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date), if sent."""
    value = headers.get("Retry-After")
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


class Answer:
    """A response as the client reads it: status, headers and the JSON body."""

    __slots__ = ("status", "reason", "headers", "data")

    def __init__(self, response: urllib3.BaseHTTPResponse):
        self.status, self.reason = response.status, response.reason or ""
        self.headers, self.data = response.headers, response.data

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.data)

    def error(self) -> dict:
        """The API's ``{"error": {...}}`` document, or {} when the body is not one."""
        try:
            error = self.json().get("error")
        except (ValueError, AttributeError):
            return {}
        return error if isinstance(error, dict) else {}

    def describe(self) -> str:
        error = self.error()
        return f"{self.status} {error.get('code', self.reason)}: {error.get('message', '')}".rstrip(": ")


class HttpTransport(Transport):
    """One connection pool to the server, shared by the job's threads and the sender;
    urllib3's own retries are off (the core retries, with the same key)."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.token, self.timeout = token, timeout
        self._prefix = urlsplit(self.url).path
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": f"runboard-client/{__version__}"}
        self._pool = urllib3.connection_from_url(
            self.url, maxsize=POOL_SIZE, retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))

    def close(self) -> None:
        self._pool.close()

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[dict] = None) -> Answer:
        try:
            response = self._pool.urlopen(method, self._prefix + path, body=body,
                                          headers={**self._headers, **headers} if headers else self._headers,
                                          redirect=False, assert_same_host=False)
        except urllib3.exceptions.HTTPError as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        answer = Answer(response)
        if answer.status == 429 or answer.status >= 500:
            raise RetryLater(answer.describe(), retry_after(answer.headers))
        return answer

    def send(self, session_id: Optional[str], op: Op) -> Any:
        if op.wire is None:
            op.wire = encode(body_of(op))
        path = PATHS[op.kind].format(id=session_id)
        answer = self._request("POST", path, op.wire, {"Content-Type": "application/json", "Idempotency-Key": op.key})
        if answer.ok:
            document = answer.json()
            if op.kind == "create":
                return document["id"]
            if op.kind == "logs":
                return document["last_seq"]
            if op.kind == "report":
                return bool(document.get("stop_requested"))
            return document
        error = answer.error()
        code = error.get("code")
        if answer.status == 409:
            if code == "idempotency_key_in_flight":
                raise RetryLater(answer.describe(), retry_after(answer.headers) or 0.5)
            if code == "log_limit_exceeded" and isinstance(error.get("stored"), int) and isinstance(error.get("limit"), int):
                raise LogsFull(error["stored"], error["limit"])
            if op.kind == "start" and self.get(session_id).get("state") == "running":
                return None                    # started already (attach to a running session)
            raise SessionGone(answer.describe())
        if answer.status == 404:
            raise SessionGone(answer.describe())
        raise Rejected(answer.describe())

    def get(self, session_id: str) -> dict:
        """The stored session (for the stop flag and ``attach``)."""
        answer = self._request("GET", f"/api/v1/sessions/{session_id}")
        if answer.status == 404:
            raise SessionGone(answer.describe())
        if not answer.ok:
            raise Rejected(answer.describe())
        return answer.json()
