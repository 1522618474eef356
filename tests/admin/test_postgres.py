"""The panel's store-dependent pages once on PostgreSQL (one fresh database per test)."""
from __future__ import annotations

import re
from datetime import datetime, time, timezone

import pytest

from admin_support import ADMIN, PASSWORD, build_app, login
from job_support import paused_runner
from repositories.records import utcnow
from repositories.states import State
from webapp.store import CREDENTIALS_KEY, EXTENSION_KEY, close_repository


@pytest.fixture
def pg(empty_postgres_url):
    app = build_app(empty_postgres_url)
    paused_runner(app)
    app.extensions[CREDENTIALS_KEY].create_user(name=ADMIN, password=PASSWORD, is_admin=True)
    client = app.test_client()
    assert login(client).status_code == 302
    yield client, app.extensions[EXTENSION_KEY]
    close_repository(app)


def test_overview_history_detail_and_usage_on_postgresql(pg):
    client, repo = pg
    done = [repo.finish(repo.start(repo.create(kind="batch", owner="ana").id).id, State.COMPLETED) for _ in range(55)]
    live = repo.start(repo.create(kind="batch", owner="bob", label="live").id)
    repo.report_progress(live.id, progress={"current": 1, "total": 2}, usage={"tokens": 9})
    repo.append_logs(live.id, [{"level": "info", "message": "hello"}])

    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="count-completed" data-count="55"' in page and 'id="count-running" data-count="1"' in page
    etag = client.get("/admin/overview/fragment").headers["ETag"]
    assert client.get("/admin/overview/fragment", headers={"If-None-Match": etag}).status_code == 304

    first = client.get("/admin/history").get_data(as_text=True)
    assert len(re.findall(r'data-testid="history-row"', first)) == 50 and live.id not in first
    older = re.search(r'id="history-older" rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert re.findall(r'data-session-id="([^"]+)"', client.get(older).get_data(as_text=True)) == [s.id for s in done[:5]][::-1]

    assert client.get(f"/admin/sessions/{live.id}/logs?after=0").json["entries"][0]["message"] == "hello"
    client.post(f"/admin/sessions/{live.id}/stop", data={"confirmed": "yes"})
    assert repo.get(live.id).stop_requested

    today = datetime.combine(utcnow().date(), time(0), tzinfo=timezone.utc).date().isoformat()
    usage = client.get("/admin/usage?range=7d").get_data(as_text=True)
    assert f'data-day="{today}" data-value="9"' in usage
