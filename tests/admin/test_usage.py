"""Usage: per owner and per kind since a chosen day, and an SVG bar per day."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone

from admin_support import clock_at
from repositories.records import utcnow

BAR = re.compile(r'data-testid="usage-bar" data-day="([\d-]+)" data-value="([\d.]+)"')


def spend(repo, when, owner, kind, tokens, cost=0.0):
    with clock_at(repo, when):
        session = repo.start(repo.create(kind=kind, owner=owner).id)
        repo.report_progress(session.id, usage={"tokens": tokens, "cost": cost})


def test_the_chart_has_one_bar_per_day_and_the_tables_sum_per_owner_and_kind(client, repo):
    today = datetime.combine(utcnow().date(), time(12), tzinfo=timezone.utc)
    spend(repo, today - timedelta(days=2), "ana", "batch", 100, 0.5)
    spend(repo, today - timedelta(days=2, hours=3), "bob", "monte_carlo", 20)
    spend(repo, today, "ana", "monte_carlo", 7, 0.25)
    spend(repo, today - timedelta(days=30), "old", "batch", 999)        # outside 7 days
    page = client.get("/admin/usage?range=7d").get_data(as_text=True)
    bars = BAR.findall(page)
    assert len(bars) == 7 and 'id="usage-chart"' in page and "<svg" in page
    values = {day: float(value) for day, value in bars}
    assert values[(today - timedelta(days=2)).date().isoformat()] == 120
    assert values[today.date().isoformat()] == 7 and sum(values.values()) == 127
    owners = dict(re.findall(r'data-testid="usage-row" data-key="(\w+)"><td>\w+</td><td>\d+</td><td>([\d,]+)</td>', page))
    assert owners["ana"] == "107" and owners["bob"] == "20" and owners["monte_carlo"] == "27" and "old" not in owners
    cost = BAR.findall(client.get("/admin/usage?range=7d&metric=cost").get_data(as_text=True))
    assert sum(float(v) for _, v in cost) == 0.75


def test_a_chosen_since_day_sets_the_range(client, repo):
    since = (utcnow() - timedelta(days=3)).date()
    page = client.get(f"/admin/usage?since={since.isoformat()}").get_data(as_text=True)
    assert len(BAR.findall(page)) == 4
    assert len(BAR.findall(client.get("/admin/usage?since=garbage").get_data(as_text=True))) == 30
