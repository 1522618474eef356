"""History: finished sessions only, keyset pages (newer/older), filters and date range."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from admin_support import clock_at
from repositories.states import State

ROW = re.compile(r'data-testid="history-row" data-session-id="([^"]+)"')


def finished(repo, state=State.COMPLETED, owner="ana", kind="batch", label=""):
    session = repo.start(repo.create(kind=kind, owner=owner, label=label).id)
    return repo.finish(session.id, state, error="x" if state is State.FAILED else None)


def rows(response):
    return ROW.findall(response.get_data(as_text=True))


def link(response, ident):
    match = re.search(rf'id="{ident}" rel="\w+" href="([^"]+)"', response.get_data(as_text=True))
    return match and match.group(1).replace("&amp;", "&")


def test_history_pages_through_finished_sessions_newest_first(client, repo):
    ids = [finished(repo).id for _ in range(120)]
    repo.start(repo.create(kind="batch", owner="ana").id)                  # live: never listed
    first = client.get("/admin/history")
    assert rows(first) == ids[::-1][:50] and link(first, "history-newer") is None
    second = client.get(link(first, "history-older"))
    assert rows(second) == ids[::-1][50:100]
    third = client.get(link(second, "history-older"))
    assert rows(third) == ids[::-1][100:] and link(third, "history-older") is None
    assert rows(client.get(link(third, "history-newer"))) == rows(second)
    assert rows(client.get(link(second, "history-newer"))) == rows(first)


def test_history_filters_by_state_owner_and_kind(client, repo):
    done = finished(repo, owner="ana", kind="batch")
    failed = finished(repo, State.FAILED, owner="bob", kind="monte_carlo")
    stopped = finished(repo, State.STOPPED, owner="bob", kind="batch")
    assert rows(client.get("/admin/history?state=failed")) == [failed.id]
    assert rows(client.get("/admin/history?owner=bob")) == [stopped.id, failed.id]
    assert rows(client.get("/admin/history?kind=batch")) == [stopped.id, done.id]
    assert rows(client.get("/admin/history?owner=bob&kind=batch&state=stopped")) == [stopped.id]


def test_history_shows_durations(client, repo):
    finished(repo)
    page = client.get("/admin/history").get_data(as_text=True)
    assert re.search(r"<td>\d+\.\ds</td>", page)


def test_history_filters_by_created_date_range(client, repo):
    days = [datetime(2026, 1, d, 12, tzinfo=timezone.utc) for d in (3, 4, 5, 6)]
    made = {}
    for day in days:
        with clock_at(repo, day):
            made[day.day] = finished(repo).id
    assert rows(client.get("/admin/history?from=2026-01-04&to=2026-01-05")) == [made[5], made[4]]
    assert rows(client.get("/admin/history?from=2026-01-06")) == [made[6]]
    assert rows(client.get("/admin/history?to=2026-01-03")) == [made[3]]


def test_a_date_range_pages_with_short_pages_rather_than_scanning_everything(client, repo):
    with clock_at(repo, datetime(2026, 1, 1, tzinfo=timezone.utc)):
        old = [finished(repo).id for _ in range(3)]
    for _ in range(260):                                   # newer than the range: skipped
        finished(repo)
    page = client.get("/admin/history?to=2026-01-01")
    assert rows(page) == [] and link(page, "history-older")        # the read budget ran out
    assert rows(client.get(link(page, "history-older"))) == old[::-1]


def test_bad_filters_and_cursors_give_a_working_page(client, repo):
    finished(repo)
    for query in ["state=running", "from=yesterday", "cursor=garbage", "kind=BAD KIND"]:
        response = client.get(f"/admin/history?{query}")
        assert response.status_code == 200 and 'data-testid="filter-problem"' in response.get_data(as_text=True), query


def test_the_first_page_is_full_even_when_the_newest_sessions_are_all_live(client, repo):
    done = [finished(repo) for _ in range(55)]
    for _ in range(250):
        repo.create(kind="batch", owner="ana")            # newer than every finished one
    shown = rows(client.get("/admin/history"))
    assert len(shown) == 50 and shown[0] == done[-1].id


def test_the_kind_filter_uses_the_stores_kind_pattern():
    from repositories.validation import MAX_KIND
    from webapp.admin.filters import SessionFilters

    assert SessionFilters.from_args({"kind": "batch.v2"}).kind == "batch.v2"
    refused = SessionFilters.from_args({"kind": "Batch"})
    assert refused.kind == "" and refused.problems[0].startswith("kind:")
    assert SessionFilters.from_args({"kind": "k" * (MAX_KIND + 5)}).kind == "k" * MAX_KIND
