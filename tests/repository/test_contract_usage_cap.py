"""Contract: usage totals across sessions (the hourly and daily rollups) stay under the
totals' cap, the report that would cross it is refused with nothing changed, and usage
reads sum any number of capped rows exactly (past 2**63, where SQLite's SUM would fail)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from repositories import validation as check
from repositories.errors import ValidationError

STEP = check.MAX_TOKENS_DELTA                    # the largest delta one report may carry
PER_SESSION = check.MAX_TOKENS_TOTAL // STEP     # reports that fill one session (512)


def running(repo, owner="ana"):
    return repo.start(repo.create(kind="batch", owner=owner).id)


def fill(repo, session_id, reports):
    for _ in range(reports):
        repo.report_progress(session_id, usage={"tokens": STEP})


def test_the_report_that_would_take_an_hourly_total_past_the_cap_is_refused(repo, clock):
    clock.set(datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))
    first, second = running(repo), running(repo)
    fill(repo, first.id, PER_SESSION - 1)
    fill(repo, second.id, 1)                              # the hour now holds exactly the cap
    with pytest.raises(ValidationError) as refused:
        repo.report_progress(second.id, progress={"current": 1}, usage={"tokens": 1})
    assert refused.value.field == "usage.tokens"
    assert repo.get(second.id).usage == {"tokens": STEP, "cost": 0.0}
    assert repo.get(second.id).progress == {}             # nothing of the refused report kept
    assert [(r.key, r.tokens) for r in repo.usage(by="owner")] == [("ana", check.MAX_TOKENS_TOTAL)]
    repo.report_progress(second.id, usage={"cost": 0.5})  # other reports still go through


def test_the_daily_total_is_capped_too(repo, clock):
    clock.set(datetime(2026, 1, 5, 1, 0, tzinfo=timezone.utc))
    fill(repo, running(repo).id, PER_SESSION)             # the day holds the cap, all in hour 1
    clock.set(datetime(2026, 1, 5, 3, 0, tzinfo=timezone.utc))
    late = running(repo)                                  # hour 3 is empty; the day is not
    with pytest.raises(ValidationError) as refused:
        repo.report_progress(late.id, usage={"tokens": 1})
    assert refused.value.field == "usage.tokens"
    clock.set(datetime(2026, 1, 6, 0, 0, tzinfo=timezone.utc))
    repo.report_progress(late.id, usage={"tokens": 1})    # a new day has room


def test_usage_sums_capped_rows_exactly_past_two_to_the_63(repo, clock):
    for day in (5, 6, 7):
        clock.set(datetime(2026, 1, day, 12, 0, tzinfo=timezone.utc))
        fill(repo, running(repo).id, PER_SESSION)
    total = 3 * check.MAX_TOKENS_TOTAL
    assert total > 2**63
    assert [(r.key, r.tokens) for r in repo.usage(by="owner")] == [("ana", total)]
    assert [r.tokens for r in repo.usage(by="day")] == [check.MAX_TOKENS_TOTAL] * 3
    since = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)          # not a midnight: the hourly rows
    assert [r.tokens for r in repo.usage(by="kind", since=since)] == [total]
