"""Idempotency across workers: the first answer lives in the store, so a repeat served by
the other gunicorn worker, on a fresh connection, replays it (SQLite and PostgreSQL)."""
from __future__ import annotations

import json

import pytest

from gunicorn_support import TOKEN, Server


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'runboard.db'}" if request.param == "sqlite"
           else request.getfixturevalue("empty_postgres_url"))
    server = Server(url, tmp_path, "idempotency", workers=2)
    server.migrate()
    with server.serving():
        yield server


def post_on(server, worker, path, body, key):
    """(status, JSON, replayed?) of one POST served by ``worker``."""
    connection = server.connection_to(worker)
    try:
        connection.request("POST", path, body=json.dumps(body),
                           headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
                                    "Idempotency-Key": key})
        with connection.getresponse() as response:
            return response.status, json.load(response), response.getheader("Idempotent-Replayed") == "true"
    finally:
        connection.close()


def test_a_repeat_served_by_the_other_worker_replays_the_first_answer(server):
    first_worker, second_worker = sorted(server.worker_pids())
    status, created, replayed = post_on(server, first_worker, "/api/v1/sessions", {"kind": "external.job"}, "c")
    assert status == 201 and not replayed
    again = post_on(server, second_worker, "/api/v1/sessions", {"kind": "external.job"}, "c")
    assert again == (201, created, True)
    session_id = created["id"]
    assert post_on(server, first_worker, f"/api/v1/sessions/{session_id}/start", {}, "s")[0] == 200
    batch = {"entries": [{"level": "info", "message": f"line {n}"} for n in range(5)]}
    for worker in (first_worker, second_worker, first_worker):
        status, body, _ = post_on(server, worker, f"/api/v1/sessions/{session_id}/logs", batch, "logs")
        assert (status, body) == (201, {"first_seq": 1, "last_seq": 5})
    report = {"usage": {"tokens": 11, "cost": 0.25}}
    for worker in (second_worker, first_worker):
        assert post_on(server, worker, f"/api/v1/sessions/{session_id}/progress", report, "u")[0] == 200
    session = server.session(session_id)
    assert session["log_count"] == 5 and session["usage"] == {"tokens": 11, "cost": 0.25}
    assert server.session_count() == 1
