"""Downloads stream 100,000 entries in order while memory stays flat."""
from __future__ import annotations

import json
import tracemalloc
from datetime import datetime, timezone

import pytest

from repositories.records import LogInput

ENTRIES = 100_000


@pytest.fixture
def big_session(app, callers):
    session = callers.admin.post("/sessions", {"kind": "external.job", "owner": "alice@example.com",
                                               "label": "big.csv"}).json
    callers.admin.post(f"/sessions/{session['id']}/start")
    repo = app.extensions["runboard"]
    for start in range(0, ENTRIES, 1000):
        repo.append_logs(session["id"], [LogInput("info", f"entry {start + i}") for i in range(1000)])
    return session


def stream_to_file(response, path) -> tuple[int, int]:
    """Consume the streamed body chunk by chunk into a file.

    Returns (bytes streamed after warm-up, growth of traced memory while streaming them):
    tracing starts once the first chunks (and the database's statement caches) are warm,
    so the figure shows whether memory grows with the download's size.
    """
    total, warm, baseline = 0, 0, 0
    chunks = iter(response.response)
    try:
        with open(path, "wb") as sink:
            for index, chunk in enumerate(chunks):
                data = chunk.encode() if isinstance(chunk, str) else chunk
                sink.write(data)
                if index == 5:
                    tracemalloc.start()
                    baseline, warm = tracemalloc.get_traced_memory()[0], total
                total += len(data)
        return total - warm, tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
        response.close()


def test_txt_download_streams_every_entry_in_order_with_the_stored_state(callers, big_session, tmp_path):
    response = callers.alice.get(f"/sessions/{big_session['id']}/logs/download?format=txt", buffered=False)
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"] == f'attachment; filename="runboard-{big_session["id"]}.txt"'
    size, peak = stream_to_file(response, tmp_path / "out.txt")
    # the working set is one batch of 1,000 entries, whatever the size of the log
    assert size > 4_000_000 and peak < 2_000_000, f"grew {peak} bytes while streaming {size}"
    header, _, body = (tmp_path / "out.txt").read_text().partition("\n\n")
    assert f"# session: {big_session['id']}" in header and "# state: running" in header
    lines = body.splitlines()
    assert len(lines) == ENTRIES
    assert all(line.endswith(f" INFO entry {i}") for i, line in enumerate(lines))


def test_json_download_streams_every_entry_in_order(callers, big_session, tmp_path):
    response = callers.admin.get(f"/sessions/{big_session['id']}/logs/download?format=json", buffered=False)
    assert response.headers["Content-Disposition"].endswith(f'runboard-{big_session["id"]}.json"')
    size, peak = stream_to_file(response, tmp_path / "out.json")
    # the working set is one batch of 1,000 entries, whatever the size of the log
    assert size > 4_000_000 and peak < 2_000_000, f"grew {peak} bytes while streaming {size}"
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["session"]["state"] == "running" and document["session"]["log_count"] == ENTRIES
    assert [e["seq"] for e in document["entries"]] == list(range(1, ENTRIES + 1))
    assert document["entries"][-1]["message"] == f"entry {ENTRIES - 1}"


def test_download_states_a_finished_sessions_real_state(callers):
    session = callers.admin.post("/sessions", {"kind": "external.job"}).json
    callers.admin.post(f"/sessions/{session['id']}/start")
    callers.admin.post(f"/sessions/{session['id']}/finish", {"state": "failed", "error": "boom"})
    text = callers.admin.get(f"/sessions/{session['id']}/logs/download").get_data(as_text=True)
    assert "# state: failed" in text
    assert callers.admin.get(f"/sessions/{session['id']}/logs/download?format=pdf").status_code == 400


def test_downloads_show_the_reporters_at_where_sent_and_the_stored_ts_otherwise(app, callers):
    session = callers.admin.post("/sessions", {"kind": "external.job"}).json
    callers.admin.post(f"/sessions/{session['id']}/start")
    at = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    app.extensions["runboard"].append_logs(session["id"], [LogInput("info", "late", at=at), LogInput("error", "now")])
    url = f"/sessions/{session['id']}/logs/download"
    stored = callers.admin.get(f"/sessions/{session['id']}/logs").json["entries"]
    lines = callers.admin.get(f"{url}?format=txt").get_data(as_text=True).partition("\n\n")[2].splitlines()
    assert lines == ["2026-03-01T10:00:00.123456Z INFO late", f"{stored[1]['ts']} ERROR now"]
    document = callers.admin.get(f"{url}?format=json").json
    assert [(e["ts"], e["at"]) for e in document["entries"]] == [(stored[0]["ts"], "2026-03-01T10:00:00.123456Z"),
                                                                 (stored[1]["ts"], None)]
