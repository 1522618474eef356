"""Workers: host, pid, version, uptime, heartbeat age, jobs, memory; stale ones highlighted."""
from __future__ import annotations

import re
from datetime import timedelta

from admin_support import clock_at
from repositories.records import utcnow


def test_workers_show_their_health_and_stale_ones_are_highlighted(client, repo):
    with clock_at(repo, utcnow() - timedelta(minutes=10)):          # 2 × 60 s timeout is long past
        repo.heartbeat_worker(worker_id="old", host="box-a", pid=11, active=0, rss_bytes=1024, version="1.0")
    repo.heartbeat_worker(worker_id="fresh", host="box-b", pid=22, active=3, rss_bytes=50 * 1024 * 1024, version="2.0")
    page = client.get("/admin/workers").get_data(as_text=True)
    assert re.search(r'data-worker-id="old" data-status="stale" class="stale"', page)
    assert re.search(r'data-worker-id="fresh" data-status="ok">', page)
    for fragment in ["box-a", "box-b", "<td>22</td>", "<td>3</td>", "50.0 MiB", "2.0", "2m 00s (2 × RUNBOARD_HEARTBEAT_TIMEOUT)"]:
        assert fragment in re.sub(r"\s+", " ", page), fragment


def test_no_workers_yet(client):
    assert 'id="workers-empty"' in client.get("/admin/workers").get_data(as_text=True)
