"""Limits every store enforces itself, so no caller (API, runner, CLI) can bypass them.

The API validates the same limits earlier with declared schemas; these checks are the
repository's own last line, and they raise before anything is written.  The constants
below are the one definition of each bound: schemas, panel forms and filters import them
rather than repeating the numbers.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import date, datetime, timezone
from typing import Any, Iterable

from .errors import SessionNotFound, ValidationError
from .records import LogInput

# -- limits ---------------------------------------------------------------------------
# Defined here once; the API's schemas, the panel's forms and filters and the CLI import
# them, so every way in refuses the same input with the same bounds.
MAX_KIND = 64
KIND_CHARS = f"[a-z0-9_.-]{{1,{MAX_KIND}}}"        # as people read it, in messages
KIND_PATTERN = f"^{KIND_CHARS}$"                     # as text: JSON Schema / pydantic ``pattern``
KIND_RE = re.compile(KIND_PATTERN)                   # compiled: use ``fullmatch``
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID_RE = re.compile(UUID_PATTERN)                   # any case; session_key canonicalises
LOG_LEVELS = ("debug", "info", "warning", "error")   # in rising order: "at least" filters rely on it
MAX_LABEL = 256
MAX_OWNER = 256
MAX_WORKER_ID = 256               # a worker's id: who started a session, and the id it heartbeats under
MAX_MESSAGE_BYTES = 8 * 1024      # of UTF-8; a schema's character bound of the same number is looser
MAX_LOG_BATCH = 1000              # entries per API append (a store takes any batch size)
MAX_LIST_LIMIT = 200              # sessions per listing page
MAX_LOG_PAGE = 5000               # entries per read_logs page
MAX_SNAPSHOT_LIMIT = 1000         # sessions per state in a snapshot
MAX_LOG_SEQ = 2**62
MAX_TOKENS_DELTA = 2**53          # exact in JSON numbers everywhere
MAX_TOKENS_TOTAL = 2**62          # far inside a signed 64-bit column, rollups included
MAX_COST_DELTA = 1e12
MAX_COST_TOTAL = 1e15
MAX_HOST = 256
MAX_VERSION = 64
MAX_PID = 2**31 - 1
MAX_RSS_BYTES = 2**62
MAX_USER_NAME = 128               # a panel login
MAX_TOKEN_NAME = 128              # an API token's note
#: The times a caller may name (a usage start, a history date range): far outside any
#: session's, yet a zone, a day or an hour either way still makes a valid datetime.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=timezone.utc)
#: The earliest UTC year a log entry's ``at`` may name; the latest is datetime's own, 9999.
EARLIEST_AT_YEAR = 2000


_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def session_key(session_id: Any) -> str:
    """The canonical form of a session id.  A malformed id names no session, so it is
    reported exactly like an unknown one: SessionNotFound.  Ids already in canonical form
    (every id the API passes on) skip building a UUID: this runs on every call."""
    if isinstance(session_id, str) and _CANONICAL_ID.fullmatch(session_id):
        return session_id
    try:
        return str(uuid.UUID(str(session_id)))
    except ValueError:
        raise SessionNotFound(str(session_id)[:80]) from None


def session_keys(session_ids: Iterable[Any]) -> list[str]:
    """The distinct canonical ids among ``session_ids``, sorted (so transactions that lock
    several rows lock them in one order); a malformed id names no session and is left out.
    A bare string is one id, not an iterable of characters."""
    if isinstance(session_ids, str):
        session_ids = (session_ids,)
    keys = set()
    for session_id in session_ids:
        try:
            keys.add(session_key(session_id))
        except SessionNotFound:
            continue
    return sorted(keys)


def kind_names(kinds: Iterable[Any]) -> list[str]:
    """The distinct kinds among ``kinds``, sorted; a value no session's kind can be is left
    out (it matches nothing).  A bare string is one kind."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    return sorted({kind for kind in kinds if isinstance(kind, str) and KIND_RE.fullmatch(kind)})


def check_new_session(kind: str, label: str, owner: str, **objects: Any) -> None:
    if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
        raise ValidationError("kind", f"must match {KIND_CHARS}")
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise ValidationError("label", f"must be a string of at most {MAX_LABEL} characters")
    if not isinstance(owner, str) or not owner or len(owner) > MAX_OWNER:
        raise ValidationError("owner", f"must be a non-empty string of at most {MAX_OWNER} characters")
    check_text("label", label)
    check_text("owner", owner)
    for name, value in objects.items():
        check_object(name, value)


MAX_JSON_DEPTH = 32


def check_worker_id(worker_id: Any) -> None:
    if worker_id is None:
        return
    if not isinstance(worker_id, str) or not worker_id or len(worker_id) > MAX_WORKER_ID:
        raise ValidationError("worker_id", f"must be a non-empty string of at most {MAX_WORKER_ID} characters")
    check_text("worker_id", worker_id)


def check_text(field: str, value: Any) -> None:
    """NUL characters cannot be stored in PostgreSQL text, so no store accepts them."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(field, "must not contain NUL characters")
        _check_unicode(field, value)


def _check_unicode(field: str, value: str) -> None:
    """Lone surrogates (e.g. from a "\\ud800" escape) are not text any database can keep."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "contains invalid Unicode (a lone surrogate)") from None


def check_object(field: str, value: Any, *, nullable: bool = True) -> None:
    """A JSON object every store can keep exactly: finite numbers, string keys, bounded depth."""
    if value is None and nullable:
        return
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    if value:
        _check_json(field, value, 0)


#: Values that need no look inside; checked by exact type first because this runs on
#: every progress report (subclasses, e.g. an IntEnum, take the general branch).
_PLAIN_SCALARS = frozenset({int, bool, type(None)})


def _check_json(field: str, value: Any, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        flat = depth < MAX_JSON_DEPTH          # items one level down are still allowed
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(field, "object keys must be strings")
            if not key.isascii():
                _check_unicode(field, key)
            kind = type(item)
            if flat and kind in _PLAIN_SCALARS:
                continue
            if flat and kind is str:
                if not item.isascii():
                    _check_unicode(field, item)
                continue
            _check_json(field, item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_json(field, item, depth + 1)
    elif isinstance(value, str):
        _check_unicode(field, value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationError(field, "numbers must be finite (no NaN or Infinity)")
    elif not (value is None or isinstance(value, (str, int, bool))):
        raise ValidationError(field, f"holds a {type(value).__name__}, which is not JSON")


def check_usage(usage: dict[str, Any] | None) -> tuple[int, float]:
    """Return (tokens, cost) deltas; negative or non-numeric deltas are refused."""
    if not usage:
        return 0, 0.0
    if not isinstance(usage, dict):
        raise ValidationError("usage", "must be a JSON object")
    unknown = set(usage) - {"tokens", "cost"}
    if unknown:
        raise ValidationError(f"usage.{sorted(unknown)[0]}", "unknown field")
    tokens, cost = usage.get("tokens", 0), usage.get("cost", 0)
    if not isinstance(tokens, int) or isinstance(tokens, bool) or not 0 <= tokens <= MAX_TOKENS_DELTA:
        raise ValidationError("usage.tokens", f"must be an integer from 0 to {MAX_TOKENS_DELTA}")
    if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not 0 <= cost <= MAX_COST_DELTA:
        raise ValidationError("usage.cost", f"must be a number from 0 to {MAX_COST_DELTA:g}")
    return tokens, float(cost)


def check_usage_totals(tokens: int | float, cost: float, *, total: str = "the session's total") -> None:
    """Accumulated usage — a session's, or a rollup's (one owner, kind and engine over an
    hour or a day: ``total="the usage total across sessions"``) — stays within the totals'
    cap, so no 64-bit column overflows and no sum of rollups a usage read makes does either."""
    if tokens > MAX_TOKENS_TOTAL:
        raise ValidationError("usage.tokens", f"would take {total} past {MAX_TOKENS_TOTAL}")
    if cost > MAX_COST_TOTAL:
        raise ValidationError("usage.cost", f"would take {total} past {MAX_COST_TOTAL:g}")


ACROSS_SESSIONS = "the usage total across sessions"


def check_log_batch(entries: Iterable[LogInput | dict[str, Any]]) -> list[LogInput]:
    """Normalise a batch to LogInput records, refusing the whole batch on the first bad entry.

    One tight pass: this runs for every entry workers send (100 a batch is the norm), so
    the well-formed dict and ASCII messages take the short branches."""
    batch = []
    append, levels, keys = batch.append, LOG_LEVELS, _LOG_KEYS
    for index, entry in enumerate(entries):
        if type(entry) is dict and entry.keys() <= keys and "level" in entry and "message" in entry:
            fields = entry.get("fields")
            entry = LogInput(entry["level"], entry["message"], {} if fields is None else fields, entry.get("at"))
        else:
            entry = _log_input(index, entry)
        at = entry.at
        if at is not None and not (isinstance(at, datetime) and at.tzinfo is timezone.utc
                                   and at.year >= EARLIEST_AT_YEAR):
            entry = dataclasses.replace(entry, at=_utc_at(index, at))
        message = entry.message
        if entry.level not in levels:
            raise ValidationError(f"entries[{index}].level", f"must be one of {', '.join(LOG_LEVELS)}")
        if not isinstance(message, str):
            raise ValidationError(f"entries[{index}].message", "must be a string")
        if message.isascii():
            size = len(message)
        else:
            try:
                size = len(message.encode("utf-8"))
            except UnicodeEncodeError:
                raise ValidationError(f"entries[{index}].message",
                                      "contains invalid Unicode (a lone surrogate)") from None
        if size > MAX_MESSAGE_BYTES:
            raise ValidationError(f"entries[{index}].message", f"is longer than {MAX_MESSAGE_BYTES // 1024} KiB of UTF-8")
        if "\x00" in message:
            raise ValidationError(f"entries[{index}].message", "must not contain NUL characters")
        if entry.fields:
            check_object(f"entries[{index}].fields", entry.fields, nullable=False)
        elif not isinstance(entry.fields, dict):
            raise ValidationError(f"entries[{index}].fields", "must be a JSON object")
        append(entry)
    if not batch:
        raise ValidationError("entries", "must hold at least one entry")
    return batch


_LOG_KEYS = frozenset({"level", "message", "fields", "at"})


def _utc_at(index: int, at: Any) -> datetime:
    """An entry's ``at`` in UTC: an aware datetime whose UTC year is 2000–9999."""
    field = f"entries[{index}].at"
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError(field, "must be a time with a time zone (ISO-8601 with Z or an offset)")
    try:
        utc = at.astimezone(timezone.utc)
    except OverflowError:                      # past 9999-12-31 once moved to UTC
        utc = None
    if utc is None or utc.year < EARLIEST_AT_YEAR:
        raise ValidationError(field, f"must be between the years {EARLIEST_AT_YEAR} and 9999 (UTC)")
    return utc


def _log_input(index: int, entry: Any) -> LogInput:
    if type(entry) is LogInput:
        return entry
    if not isinstance(entry, dict):
        raise ValidationError(f"entries[{index}]", "must be an object with level and message")
    unknown = set(entry) - _LOG_KEYS
    if unknown:
        raise ValidationError(f"entries[{index}].{sorted(unknown)[0]}", "unknown field")
    if "level" not in entry or "message" not in entry:
        missing = "level" if "level" not in entry else "message"
        raise ValidationError(f"entries[{index}].{missing}", "is required")
    fields = entry.get("fields")
    return LogInput(entry["level"], entry["message"], {} if fields is None else fields, entry.get("at"))


def check_error(error: Any) -> None:
    if error is not None and not isinstance(error, str):
        raise ValidationError("error", "must be a string")
    check_text("error", error)


def check_worker(worker_id: Any, host: Any, pid: Any, active: Any, rss_bytes: Any, version: Any) -> None:
    for field, value, limit in (("worker_id", worker_id, MAX_WORKER_ID), ("host", host, MAX_HOST)):
        if not isinstance(value, str) or not value or len(value) > limit:
            raise ValidationError(field, f"must be a non-empty string of at most {limit} characters")
        check_text(field, value)
    if version is not None:
        if not isinstance(version, str) or len(version) > MAX_VERSION:
            raise ValidationError("version", f"must be a string of at most {MAX_VERSION} characters")
        check_text("version", version)
    check_limit("pid", pid, 0, MAX_PID)
    check_limit("active", active, 0, MAX_PID)
    if rss_bytes is not None:
        check_limit("rss_bytes", rss_bytes, 0, MAX_RSS_BYTES)


def check_time(field: str, moment: Any) -> datetime:
    """``moment`` in UTC; ValidationError naming ``field`` for a naive or non-datetime
    value, or one outside EARLIEST_TIME..LATEST_TIME (where converting it to UTC could
    overflow)."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValidationError(field, "must be a time with a time zone")
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise ValidationError(field, f"must be between {EARLIEST_TIME.date()} and {LATEST_TIME.date()}")
    return utc


def check_date(field: str, day: date) -> date:
    """A calendar date (UTC) within the bounds of ``check_time``."""
    if not EARLIEST_TIME.date() <= day <= LATEST_TIME.date():
        raise ValidationError(field, f"must be between {EARLIEST_TIME.date()} and {LATEST_TIME.date()}")
    return day


def check_limit(field: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(field, f"must be an integer from {low} to {high}")
    return value
