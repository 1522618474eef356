"""Log entries as text lines: the TXT download, the CLI and the panel print them alike."""
from __future__ import annotations

from repositories.records import LogEntry, iso


def one_line(value) -> str:
    """Keep one entry per line: embedded newlines are shown escaped."""
    return "" if value is None else str(value).replace("\r", "\\r").replace("\n", "\\n")


def log_line(entry: LogEntry) -> str:
    """``<time> <LEVEL> <message>``: the reporter's ``at`` where it sent one, else the
    server's ``ts``, as stored (UTC ISO-8601, never regenerated)."""
    return f"{iso(entry.shown_at)} {entry.level.upper()} {one_line(entry.message)}"
