"""Jinja filters: UTC ISO-8601 times, durations, ages, sizes and numbers."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from flask import Flask

from repositories.records import iso, utcnow


def duration(value: timedelta | float | None) -> str:
    """``1h 02m 03s`` / ``4m 05s`` / ``6.2s``; an em dash for nothing."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 60:
        return f"{max(seconds, 0):.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def session_duration(session, now: datetime | None = None) -> str:
    """Start (or creation) to finish; still counting for a live session."""
    begin = session.started_at or session.created_at
    end = session.finished_at or now or utcnow()
    return duration(end - begin)


def age(moment: datetime | None, now: datetime | None = None) -> str:
    return "—" if moment is None else duration((now or utcnow()) - moment)


def size(value: int | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.6f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


def pretty(value) -> str:
    """Indented JSON for <pre> blocks (autoescaped like any text)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def compact(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def register_filters(app: Flask) -> None:
    app.jinja_env.filters.update(iso=iso, duration=duration, session_duration=session_duration,
                                 age=age, size=size, number=number,
                                 pretty=pretty, compact=compact)
