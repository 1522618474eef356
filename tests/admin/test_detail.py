"""Session detail: fields, 404s, the log tail fragment, downloads and the Stop form."""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone

import pytest

from admin_support import ADMIN, text
from repositories.records import LogInput, iso
from repositories.states import State


def running_with_logs(repo, n=3):
    session = repo.start(repo.create(kind="batch", owner="ana", label="input.csv", params={"jobs_per_phase": 5},
                                     meta={"engine": "numpy"}).id)
    repo.report_progress(session.id, progress={"current": 2, "total": 8, "step": "fit"},
                         usage={"tokens": 1234, "cost": 0.5})
    repo.append_logs(session.id, [{"level": "debug" if i % 2 else "info", "message": f"line {i}"} for i in range(1, n + 1)])
    return repo.get(session.id)


def test_the_detail_page_shows_the_session(client, repo):
    session = running_with_logs(repo)
    page = client.get(f"/admin/sessions/{session.id}")
    body, words = page.get_data(as_text=True), text(page)
    assert page.status_code == 200
    for fragment in ['id="meta-owner">ana', 'id="meta-label">input.csv', 'id="meta-kind">batch',
                     'id="meta-engine">numpy', 'data-state="running"', 'id="session-progress"', 'value="25.0"']:
        assert fragment in body, fragment
    assert "step: fit" in words and "1,234" in words and "0.5" in words
    assert '"jobs_per_phase": 5' in html.unescape(body)
    assert body.count('data-testid="log-row"') == 3
    assert 'data-after="3"' in body and 'id="stop-button"' in body


def test_a_finished_session_shows_its_result_or_error(client, repo):
    done = repo.finish(repo.start(repo.create(kind="batch", owner="ana").id).id, State.COMPLETED, result={"mean": 1.5})
    failed = repo.finish(repo.start(repo.create(kind="batch", owner="ana").id).id, State.FAILED, error="heartbeat lost")
    page = client.get(f"/admin/sessions/{done.id}").get_data(as_text=True)
    assert 'id="session-result"' in page and '"mean": 1.5' in html.unescape(page) and 'id="stop-button"' not in page
    assert 'data-live="false"' in page
    assert 'id="session-error" class="error">heartbeat lost' in client.get(f"/admin/sessions/{failed.id}").get_data(as_text=True)


@pytest.mark.parametrize("session_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "1%27%20or%201=1"])
def test_unknown_or_malformed_ids_are_a_404_page(client, session_id):
    for suffix in ["", "/summary", "/logs", "/download.txt", "/stop"]:
        response = client.get(f"/admin/sessions/{session_id}{suffix}")
        assert response.status_code == 404 and response.mimetype == "text/html", suffix


def test_the_log_fragment_returns_entries_after_a_seq(client, repo):
    session = running_with_logs(repo, n=5)
    page = client.get(f"/admin/sessions/{session.id}/logs?after=3").json
    assert [e["seq"] for e in page["entries"]] == [4, 5] and page["next_after"] == 5
    assert page["entries"][0]["ts"].endswith("Z") and page["state"] == "running"
    assert client.get(f"/admin/sessions/{session.id}/logs?after=5").json["entries"] == []
    repo.append_logs(session.id, [{"level": "error", "message": "boom"}])
    assert [e["message"] for e in client.get(f"/admin/sessions/{session.id}/logs?after=5").json["entries"]] == ["boom"]


def test_the_log_tail_shows_the_reporters_at_where_sent_and_the_stored_ts_otherwise(client, repo):
    session = repo.start(repo.create(kind="batch", owner="ana").id)
    at = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    repo.append_logs(session.id, [LogInput("info", "buffered", at=at), LogInput("info", "live")])
    stored = repo.read_logs(session.id).entries
    page = client.get(f"/admin/sessions/{session.id}").get_data(as_text=True)
    rows = page.split('data-testid="log-row"')[1:]
    assert "2026-03-01T10:00:00.123456Z" in rows[0] and iso(stored[0].ts) not in rows[0]
    assert iso(stored[1].ts) in rows[1]
    polled = client.get(f"/admin/sessions/{session.id}/logs?after=0").json["entries"]
    assert [(e["ts"], e["at"]) for e in polled] == [(iso(stored[0].ts), "2026-03-01T10:00:00.123456Z"),
                                                    (iso(stored[1].ts), None)]


def test_the_level_filter_keeps_that_level_and_above(client, repo):
    session = running_with_logs(repo, n=4)
    page = client.get(f"/admin/sessions/{session.id}/logs?after=0&level=info").json
    assert [e["seq"] for e in page["entries"]] == [2, 4] and page["next_after"] == 4
    html = client.get(f"/admin/sessions/{session.id}?level=info").get_data(as_text=True)
    assert html.count('data-testid="log-row"') == 2 and '<option value="info" selected>' in html


def test_a_malformed_after_is_a_400(client, repo):
    session = running_with_logs(repo)
    assert client.get(f"/admin/sessions/{session.id}/logs?after=-1").status_code == 400


def test_downloads_reuse_the_api_formats_behind_the_login(client, repo):
    session = running_with_logs(repo)
    txt = client.get(f"/admin/sessions/{session.id}/download.txt")
    assert txt.headers["Content-Disposition"] == f'attachment; filename="runboard-{session.id}.txt"'
    lines = txt.get_data(as_text=True).splitlines()
    assert "# state: running" in lines
    assert [line.split(" ", 1)[1] for line in lines[-3:]] == ["DEBUG line 1", "INFO line 2", "DEBUG line 3"]
    data = json.loads(client.get(f"/admin/sessions/{session.id}/download.json").get_data(as_text=True))
    assert data["session"]["id"] == session.id and data["session"]["usage"]["cost"] == 0.5
    assert [e["seq"] for e in data["entries"]] == [1, 2, 3]


def test_stopping_a_running_session_logs_who_and_shows_the_wait(client, repo):
    session = running_with_logs(repo)
    response = client.post(f"/admin/sessions/{session.id}/stop", data={"confirmed": "yes"})
    assert response.status_code == 302
    stored = repo.get(session.id)
    assert stored.state is State.RUNNING and stored.stop_requested
    last = repo.read_logs(session.id, after=0).entries[-1]
    assert last.message == f"stop requested by {ADMIN}" and last.fields["role"] == "admin"
    page = client.get(f"/admin/sessions/{session.id}")
    assert "stop requested — waiting for the job (" in text(page)
    assert 'id="stop-elapsed">0<' in page.get_data(as_text=True) or 'id="stop-elapsed">1<' in page.get_data(as_text=True)
    assert 'id="stop-button"' not in page.get_data(as_text=True)
    summary = client.get(f"/admin/sessions/{session.id}/summary").get_data(as_text=True)
    assert 'id="stop-status"' in summary and "<html" not in summary


def test_stop_without_confirmation_shows_a_confirmation_page_first(client, repo):
    session = running_with_logs(repo)
    page = client.post(f"/admin/sessions/{session.id}/stop", data={})
    assert page.status_code == 200 and 'id="stop-confirm-form"' in page.get_data(as_text=True)
    assert not repo.get(session.id).stop_requested
    assert 'name="confirmed" type="hidden" value="yes"' in page.get_data(as_text=True)


def test_stopping_a_pending_session_cancels_it(client, repo):
    session = repo.create(kind="batch", owner="ana")
    client.post(f"/admin/sessions/{session.id}/stop", data={"confirmed": "yes"})
    assert repo.get(session.id).state is State.STOPPED


def test_stopping_a_finished_session_says_so(client, repo):
    session = repo.finish(repo.start(repo.create(kind="batch", owner="ana").id).id, State.COMPLETED)
    response = client.post(f"/admin/sessions/{session.id}/stop", data={"confirmed": "yes"}, follow_redirects=True)
    assert "already completed" in text(response)


def test_the_summary_fragment_answers_304_until_the_session_changes(client, repo):
    session = running_with_logs(repo)
    etag = client.get(f"/admin/sessions/{session.id}/summary").headers["ETag"]
    assert client.get(f"/admin/sessions/{session.id}/summary", headers={"If-None-Match": etag}).status_code == 304
    repo.report_progress(session.id, progress={"current": 3})
    assert client.get(f"/admin/sessions/{session.id}/summary", headers={"If-None-Match": etag}).status_code == 200


def test_the_level_filter_offers_the_stores_log_levels(client, repo):
    from repositories.validation import LOG_LEVELS

    page = client.get(f"/admin/sessions/{running_with_logs(repo).id}").get_data(as_text=True)
    offered = [name for name in LOG_LEVELS if f'<option value="{name}"' in page]
    assert offered == list(LOG_LEVELS) and page.count("<option value=") == len(LOG_LEVELS)


def test_the_detail_page_and_the_live_summary_show_who_started_the_session(client, repo):
    session = repo.create(kind="batch", owner="ana")
    page = client.get(f"/admin/sessions/{session.id}").get_data(as_text=True)
    assert 'id="meta-worker" class="mono" title="who started the session">—<' in page
    repo.start(session.id, worker_id="celery@box-<1>")
    page = client.get(f"/admin/sessions/{session.id}").get_data(as_text=True)
    assert ">celery@box-&lt;1&gt;</dd>" in page
    summary = client.get(f"/admin/sessions/{session.id}/summary").get_data(as_text=True)
    assert 'id="session-meta-live" hidden' in summary
    assert '<span data-meta="meta-worker">celery@box-&lt;1&gt;</span>' in summary
    assert '<span data-meta="meta-started"><time datetime=' in summary


def test_the_banner_after_a_stop_never_claims_what_the_store_contradicts(client, repo):
    """The flash is shown once, on the next page, which may come after the job already
    acknowledged; only the summary (from the store) says whether it is still waiting."""
    session = running_with_logs(repo)
    page = client.post(f"/admin/sessions/{session.id}/stop", data={"confirmed": "yes"}, follow_redirects=True)
    body = page.get_data(as_text=True)
    banner = body[body.index('id="flash-messages"'):body.index("</ul>", body.index('id="flash-messages"'))]
    assert "Stop requested." in banner and "waiting" not in banner
    assert "stop requested — waiting for the job (" in text(page)          # the summary says it

    session = running_with_logs(repo)
    assert client.post(f"/admin/sessions/{session.id}/stop", data={"confirmed": "yes"}).status_code == 302
    repo.finish(session.id, State.STOPPED)                                 # the job acknowledges
    page = client.get(f"/admin/sessions/{session.id}")                     # the flash shows here
    assert "Stop requested." in text(page) and 'data-state="stopped"' in page.get_data(as_text=True)
    summary = client.get(f"/admin/sessions/{session.id}/summary").get_data(as_text=True)
    for shown in (text(page), summary):
        assert "waiting" not in shown and "acknowledge" not in shown
