"""``LogHandler``: the standard ``logging`` records of a job as its session's log entries.

The records of the client's own machinery (``runboard``, and ``urllib3``, which logs each
connection) are left out: sending them would report the reporting, and every
delivered batch would make another.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict

#: The attributes every ``LogRecord`` has; anything else on a record came from ``extra``.
STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
OWN_LOGGERS = ("runboard", "urllib3")


def level_of(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def extra_fields(record: logging.LogRecord) -> Dict[str, Any]:
    """The record's ``extra`` values that JSON can carry (others are left out)."""
    fields = {}
    for key, value in vars(record).items():
        if key in STANDARD or key.startswith("_"):
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        fields[key] = value
    return fields


def message_of(record: logging.LogRecord) -> str:
    """The record's message with its traceback and stack, as one log entry's text."""
    message = record.getMessage()
    if record.exc_info:
        message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
    elif record.exc_text:
        message = f"{message}\n{record.exc_text}"
    if record.stack_info:
        message = f"{message}\n{record.stack_info}"
    return message


class LogHandler(logging.Handler):
    """Turns records into entries of ``run``'s log: level mapped, ``getMessage()`` with
    the exception's traceback appended, ``extra`` fields kept as ``fields``."""

    def __init__(self, run, level: int = logging.INFO):
        super().__init__(level)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".", 1)[0] in OWN_LOGGERS:
            return
        try:
            self.run.log(level_of(record.levelno), message_of(record), **extra_fields(record))
        except Exception:                      # noqa: BLE001 - logging must never break the job
            self.handleError(record)
