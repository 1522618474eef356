"""A task's outcome as the session takes it: its return value as ``result``, its exception
as ``error`` and a traceback for the log."""
from __future__ import annotations

import json
import traceback
from typing import Any, Optional

from ..client import summary

#: A return value this large (JSON, in bytes) is stored as its cut ``repr`` instead.
MAX_RESULT_BYTES = 512 * 1024
MAX_REPR = 8 * 1024
MAX_DEPTH = 32


def result_of(value: Any) -> dict:
    """A task's return value as the session's ``result``: a dict the server can store as
    it is, else ``{"value": value}``, with the value's ``repr`` when JSON cannot carry it."""
    if isinstance(value, dict) and _storable(value):
        return value
    if not isinstance(value, dict) and _storable({"value": value}):
        return {"value": value}
    return {"value": _repr(value)}


def _storable(document: dict) -> bool:
    try:
        text = json.dumps(document, allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError, UnicodeError, OverflowError):
        return False
    return size <= MAX_RESULT_BYTES and "\\u0000" not in text and _depth(document) <= MAX_DEPTH


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, (list, tuple)):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level - 1


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:                          # noqa: BLE001 - a broken __repr__
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 2] + " …"


def traceback_of(exception: Optional[BaseException], tb=None, einfo=None) -> str:
    text = getattr(einfo, "traceback", None)
    if text:
        return str(text).rstrip()
    if exception is None:
        return "the task failed"
    return "".join(traceback.format_exception(type(exception), exception, tb or exception.__traceback__)).rstrip()


def error_of(exception: Optional[BaseException]) -> str:
    return (summary(exception) if exception is not None else "the task failed").replace("\x00", "\\x00")


