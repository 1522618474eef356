"""Usage: tokens and cost per owner and per kind since a chosen day, and a chart by day."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from flask import render_template, request

from repositories.records import utcnow

from ..store import get_repository
from . import bp
from .charts import bar_chart, days_between

RANGES = {"1d": 1, "7d": 7, "30d": 30, "90d": 90, "365d": 365}
DEFAULT_RANGE = "30d"
METRICS = ("tokens", "cost")


def since_day(args, today: date) -> tuple[date, str]:
    """``since=YYYY-MM-DD`` wins over ``range``; at most a year back, never in the future."""
    raw = (args.get("since") or "").strip()[:10]
    try:
        chosen = date.fromisoformat(raw) if raw else None
    except ValueError:
        chosen = None
    if chosen is not None:
        return min(max(chosen, today - timedelta(days=365)), today), ""
    span = args.get("range") if args.get("range") in RANGES else DEFAULT_RANGE
    return today - timedelta(days=RANGES[span] - 1), span


@bp.get("/usage")
def usage():
    """Three reads of the hourly rollups since the chosen day (at most a year back), grouped
    by owner, by kind and by day; sessions are never scanned."""
    today = utcnow().date()
    first, span = since_day(request.args, today)
    metric = request.args.get("metric") if request.args.get("metric") in METRICS else "tokens"
    since = datetime.combine(first, time(0), tzinfo=timezone.utc)
    repository = get_repository()
    by_owner = repository.usage(by="owner", since=since)
    by_kind = repository.usage(by="kind", since=since)
    by_day = {row.key: getattr(row, metric) for row in repository.usage(by="day", since=since)}
    chart = bar_chart(by_day, days_between(first, today))
    return render_template("admin/usage.html", by_owner=by_owner, by_kind=by_kind, chart=chart,
                           first=first, today=today, span=span, ranges=RANGES, metric=metric, metrics=METRICS)
