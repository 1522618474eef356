"""Hourly usage rollups: keys and grouping shared by every store.

Rollups are keyed by (owner, kind, engine, hour) so they survive session cleanup and a
usage page never has to scan sessions.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable

from .errors import ValidationError
from .records import UsageRow

GROUPINGS = ("owner", "kind", "engine")
#: Also accepted by ``usage(by=...)``: the rollup hour folded to its UTC date
#: ("2026-01-05"), for charts by day.  Kept out of GROUPINGS, which the API and CLI offer.
BY_DAY = "day"


def engine_of(meta: dict[str, Any]) -> str:
    engine = meta.get("engine") if isinstance(meta, dict) else None
    return str(engine)[:128] if engine is not None else ""


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def day_start(moment: datetime) -> datetime:
    """Midnight UTC of ``moment``'s day: the key of the daily rollups."""
    return moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def day_of(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).date().isoformat()


def check_grouping(by: str) -> int:
    """The index of the rollup key part ``by`` groups on (3, the hour, for ``day``)."""
    if by == BY_DAY:
        return 3
    if by not in GROUPINGS:
        raise ValidationError("by", f"must be one of {', '.join(GROUPINGS + (BY_DAY,))}")
    return GROUPINGS.index(by)


def fold_days(rows: Iterable[tuple[datetime, int, int, float]]) -> list[UsageRow]:
    """Hourly sums ``(hour, sessions, tokens, cost)`` folded into one row per UTC day."""
    return group_usage((((None, None, None, hour), [s, t, c]) for hour, s, t, c in rows),
                       by=BY_DAY, since=None, owner=None)


def group_usage(rows: Iterable[tuple[tuple, list]], *, by: str, since: datetime | None,
                owner: str | None) -> list[UsageRow]:
    """Sum ``((owner, kind, engine, hour), [sessions, tokens, cost])`` rows by one key part."""
    index = check_grouping(by)
    totals: dict[str, list] = defaultdict(lambda: [0, 0, 0.0])
    for key, (sessions, tokens, cost) in rows:
        if owner is not None and key[0] != owner:
            continue
        if since is not None and key[3] < hour_of(since):
            continue
        total = totals[day_of(key[3]) if index == 3 else key[index]]
        total[0] += sessions
        total[1] += tokens
        total[2] += cost
    return [UsageRow(key, s, t, round(c, 6)) for key, (s, t, c) in sorted(totals.items())]
