"""Overview: counts and lists from one snapshot, filters, the fragment's ETag, demo runs."""
from __future__ import annotations

import re

from admin_support import ADMIN, text
from repositories.states import State
from webapp.runner import RUNNER_KEY


def make_sessions(repo):
    running = repo.start(repo.create(kind="batch", owner="ana", label="alpha.csv").id)
    repo.report_progress(running.id, progress={"current": 1, "total": 4, "step": "load"})
    pending = repo.create(kind="monte_carlo", owner="bob", label="beta.csv")
    done = repo.finish(repo.start(repo.create(kind="batch", owner="bob", label="gamma").id).id, State.COMPLETED)
    return running, pending, done


def test_counts_come_from_the_snapshot_and_every_session_shows_once(client, repo):
    running, pending, done = make_sessions(repo)
    page = client.get("/admin/").get_data(as_text=True)
    assert re.search(r'id="count-running" data-count="1"', page)
    assert re.search(r'id="count-pending" data-count="1"', page)
    assert re.search(r'id="count-completed" data-count="1"', page)
    assert re.search(r'id="count-failed" data-count="0"', page)
    for session in (running, pending, done):
        assert page.count(f'data-session-id="{session.id}"') == 1
    assert 'id="snapshot-taken-at"' in page and "<time datetime=" in page


def test_running_sessions_show_a_progress_bar(client, repo):
    running, _, _ = make_sessions(repo)
    page = client.get("/admin/").get_data(as_text=True)
    assert re.search(r'<progress data-testid="session-progress" max="100" value="25.0"', page)
    assert "load" in page


def test_filters_by_owner_kind_and_text_keep_the_counts(client, repo):
    running, pending, done = make_sessions(repo)
    page = client.get("/admin/?owner=bob").get_data(as_text=True)
    assert running.id not in page and pending.id in page and done.id in page
    assert 'id="count-running" data-count="1"' in page                    # counts stay whole
    page = client.get("/admin/?kind=batch&q=ALPHA").get_data(as_text=True)
    assert running.id in page and pending.id not in page and done.id not in page
    assert 'value="ALPHA"' in page                                        # the form keeps its values


def test_a_malformed_kind_filter_is_reported_not_a_500(client, repo):
    response = client.get("/admin/?kind=Not%20A%20Kind")
    assert response.status_code == 200 and 'data-testid="filter-problem"' in response.get_data(as_text=True)


def test_the_fragment_answers_304_until_a_shown_session_changes(client, repo):
    running, pending, _ = make_sessions(repo)
    first = client.get("/admin/overview/fragment")
    assert first.status_code == 200 and "<html" not in first.get_data(as_text=True)
    etag = first.headers["ETag"]
    assert client.get("/admin/overview/fragment", headers={"If-None-Match": etag}).status_code == 304
    repo.report_progress(running.id, progress={"current": 2})
    changed = client.get("/admin/overview/fragment", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    etag = changed.headers["ETag"]
    repo.start(pending.id)                                                # moves between states
    assert client.get("/admin/overview/fragment", headers={"If-None-Match": etag}).status_code == 200


def test_the_fragments_etag_depends_on_the_filters(client, repo):
    make_sessions(repo)
    etag = client.get("/admin/overview/fragment").headers["ETag"]
    assert client.get("/admin/overview/fragment?owner=bob", headers={"If-None-Match": etag}).status_code == 200


def test_the_page_points_the_live_refresh_at_the_filtered_fragment(client):
    page = client.get("/admin/?owner=bob&kind=batch").get_data(as_text=True)
    assert 'data-refresh-url="/admin/overview/fragment?owner=bob&amp;kind=batch"' in page


def test_a_demo_run_is_created_through_the_runner_as_the_admin(app, client, repo):
    response = client.post("/admin/runs", data={"kind": "batch", "label": "demo", "jobs_per_phase": "3",
                                                "fail_rate": "0.1"})
    assert response.status_code == 302
    session_id = response.location.rsplit("/", 1)[1]
    session = repo.get(session_id)
    assert (session.owner, session.kind, session.label) == (ADMIN, "batch", "demo")
    assert session.params["jobs_per_phase"] == 3
    assert app.extensions[RUNNER_KEY].submitted == [session_id]


def test_a_bad_demo_run_stores_nothing_and_says_why(client, repo):
    response = client.post("/admin/runs", data={"kind": "monte_carlo", "iterations": "0"}, follow_redirects=True)
    assert "The demo run was not started" in text(response)
    assert repo.snapshot().counts["pending"] == 0
    response = client.post("/admin/runs", data={"kind": "rm -rf"}, follow_redirects=True)
    assert "The demo run was not started" in text(response)


def test_the_root_url_lands_on_the_panel(app, client):
    page = client.get("/", follow_redirects=True)
    assert page.status_code == 200 and page.mimetype == "text/html" and page.request.path == "/admin/"
    signed_out = app.test_client().get("/", follow_redirects=True)
    assert signed_out.status_code == 200 and signed_out.request.path == "/admin/login"
