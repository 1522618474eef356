"""Contract: usage(by="day") folds the hourly rollups into one row per UTC day."""
from __future__ import annotations

from datetime import datetime, timezone

from repositories.usage import GROUPINGS


def running(repo, owner="ana", kind="batch"):
    return repo.start(repo.create(kind=kind, owner=owner).id)


def test_usage_by_day_sums_every_hour_of_a_utc_day_into_one_row(repo, clock):
    clock.set(datetime(2026, 1, 5, 0, 10, tzinfo=timezone.utc))
    first = running(repo)
    repo.report_progress(first.id, usage={"tokens": 1, "cost": 0.25})
    clock.set(datetime(2026, 1, 5, 23, 50, tzinfo=timezone.utc))
    repo.report_progress(first.id, usage={"tokens": 2, "cost": 0.5})
    clock.set(datetime(2026, 1, 7, 12, 0, tzinfo=timezone.utc))
    second = running(repo, owner="bob", kind="monte_carlo")
    repo.report_progress(second.id, usage={"tokens": 40})
    rows = repo.usage(by="day")
    assert [(r.key, r.sessions, r.tokens, r.cost) for r in rows] == [
        ("2026-01-05", 1, 3, 0.75), ("2026-01-07", 1, 40, 0.0)]


def test_usage_by_day_respects_since_and_owner(repo, clock):
    clock.set(datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc))
    repo.report_progress(running(repo).id, usage={"tokens": 1})
    clock.set(datetime(2026, 1, 6, 8, 0, tzinfo=timezone.utc))
    repo.report_progress(running(repo, owner="bob").id, usage={"tokens": 5})
    repo.report_progress(running(repo).id, usage={"tokens": 7})
    since = datetime(2026, 1, 6, 0, 0, tzinfo=timezone.utc)
    assert [(r.key, r.tokens) for r in repo.usage(by="day", since=since)] == [("2026-01-06", 12)]
    assert [(r.key, r.tokens) for r in repo.usage(by="day", owner="ana")] == [
        ("2026-01-05", 1), ("2026-01-06", 7)]


def test_day_is_not_offered_where_owner_kind_and_engine_are():
    assert "day" not in GROUPINGS
