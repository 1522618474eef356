"""Contract: heartbeat sweeps, retention cleanup, usage rollups and worker heartbeats."""
from __future__ import annotations

from datetime import timedelta

import pytest

from repositories.errors import InvalidTransition, SessionNotFound, ValidationError
from repositories.records import CleanupCounts
from repositories.states import State


def running(repo, **create):
    return repo.start(repo.create(kind="batch", owner="ana", **create).id)


def test_the_sweep_fails_only_running_sessions_whose_heartbeat_is_stale(repo, clock):
    stale = running(repo)
    pending = repo.create(kind="batch", owner="ana")
    fresh = running(repo)
    clock.advance(seconds=50)
    repo.report_progress(fresh.id, progress={"current": 1})
    clock.advance(seconds=20)
    assert repo.sweep_heartbeats(timedelta(seconds=60)) == [stale.id]
    failed = repo.get(stale.id)
    assert failed.state is State.FAILED and failed.error == "heartbeat lost"
    assert failed.finished_at == failed.updated_at is not None
    assert repo.get(fresh.id).state is State.RUNNING
    assert repo.get(pending.id).state is State.PENDING
    assert repo.snapshot().counts == {"pending": 1, "running": 1, "completed": 0, "failed": 1, "stopped": 0}


def test_a_second_sweep_finds_nothing(repo, clock):
    running(repo)
    clock.advance(minutes=5)
    assert len(repo.sweep_heartbeats(timedelta(seconds=60))) == 1
    assert repo.sweep_heartbeats(timedelta(seconds=60)) == []


def test_a_swept_session_stays_failed_when_its_worker_comes_back(repo, clock):
    session = running(repo)
    clock.advance(minutes=5)
    repo.sweep_heartbeats(timedelta(seconds=60))
    with pytest.raises(InvalidTransition):
        repo.report_progress(session.id, progress={"current": 1})
    assert repo.get(session.id).state is State.FAILED


def finished_with_logs(repo, state, n_logs):
    session = running(repo)
    if n_logs:
        repo.append_logs(session.id, [{"level": "info", "message": "m"}] * n_logs)
    return repo.finish(session.id, state)


def test_cleanup_removes_whole_old_finished_sessions_and_their_logs(repo, clock):
    old = [finished_with_logs(repo, state, 3) for state in (State.COMPLETED, State.FAILED, State.STOPPED)]
    cancelled = repo.request_stop(repo.create(kind="batch", owner="ana").id)
    clock.advance(days=8)
    recent = finished_with_logs(repo, State.COMPLETED, 2)
    live = running(repo)
    pending = repo.create(kind="batch", owner="ana")
    assert repo.cleanup(timedelta(days=7)) == CleanupCounts(sessions=4, log_entries=9)
    for session in old + [cancelled]:
        with pytest.raises(SessionNotFound):
            repo.get(session.id)
        with pytest.raises(SessionNotFound):
            repo.read_logs(session.id)
    assert repo.read_logs(recent.id).entries and repo.get(live.id) and repo.get(pending.id)
    assert repo.snapshot().counts == {"pending": 1, "running": 1, "completed": 1, "failed": 0, "stopped": 0}
    assert repo.cleanup(timedelta(days=7)) == CleanupCounts(0, 0)


def test_a_dry_run_counts_without_removing(repo, clock):
    done = finished_with_logs(repo, State.COMPLETED, 4)
    clock.advance(days=2)
    assert repo.cleanup(timedelta(days=1), dry_run=True) == CleanupCounts(1, 4)
    assert repo.get(done.id).log_count == 4
    assert repo.cleanup(timedelta(days=3), dry_run=True) == CleanupCounts(0, 0)


def test_usage_rolls_up_per_owner_kind_and_engine_and_survives_cleanup(repo, clock):
    a = running(repo, meta={"engine": "gpt"})
    b = repo.start(repo.create(kind="monte_carlo", owner="bob", meta={"engine": "numpy"}).id)
    repo.report_progress(a.id, usage={"tokens": 100, "cost": 0.5})
    repo.report_progress(a.id, usage={"tokens": 50, "cost": 0.25})
    repo.report_progress(b.id, usage={"tokens": 10})
    repo.finish(a.id, State.COMPLETED)
    clock.advance(days=30)
    repo.cleanup(timedelta(days=7))
    by_owner = {row.key: row for row in repo.usage(by="owner")}
    assert (by_owner["ana"].sessions, by_owner["ana"].tokens, by_owner["ana"].cost) == (1, 150, 0.75)
    assert (by_owner["bob"].sessions, by_owner["bob"].tokens) == (1, 10)
    assert {row.key for row in repo.usage(by="kind")} == {"batch", "monte_carlo"}
    assert {row.key: row.tokens for row in repo.usage(by="engine")} == {"gpt": 150, "numpy": 10}


def test_usage_follows_the_engine_a_report_sets(repo):
    session = running(repo)
    repo.report_progress(session.id, meta={"engine": "late"}, usage={"tokens": 3})
    assert {row.key: row.tokens for row in repo.usage(by="engine")} == {"": 0, "late": 3}


def test_usage_can_be_limited_to_one_owner_and_a_start_time(repo, clock):
    first = running(repo)
    repo.report_progress(first.id, usage={"tokens": 1})
    clock.advance(hours=3)
    since = clock.now
    second = repo.start(repo.create(kind="batch", owner="bob").id)
    repo.report_progress(second.id, usage={"tokens": 2})
    repo.report_progress(first.id, usage={"tokens": 4})
    assert {r.key: r.tokens for r in repo.usage(by="owner", since=since)} == {"ana": 4, "bob": 2}
    assert [(r.key, r.tokens) for r in repo.usage(by="owner", owner="bob")] == [("bob", 2)]


def test_an_unknown_usage_grouping_is_refused(repo):
    with pytest.raises(ValidationError) as caught:
        repo.usage(by="day")
    assert caught.value.field == "by"


def test_worker_heartbeats_upsert_and_list_newest_first(repo, clock):
    repo.heartbeat_worker(worker_id="w1", host="alpha", pid=10)
    clock.advance(seconds=5)
    repo.heartbeat_worker(worker_id="w2", host="beta", pid=20, active=2, rss_bytes=1024, version="1.0")
    clock.advance(seconds=5)
    repo.heartbeat_worker(worker_id="w1", host="alpha", pid=11, active=1)
    workers = repo.list_workers()
    assert [(w.worker_id, w.pid, w.active) for w in workers] == [("w1", 11, 1), ("w2", 20, 2)]
    assert workers[1].rss_bytes == 1024 and workers[1].version == "1.0"
    assert workers[0].last_seen > workers[1].last_seen


@pytest.mark.parametrize("arguments, field", [
    ({"worker_id": ""}, "worker_id"), ({"host": "h" * 257}, "host"), ({"pid": -1}, "pid"),
    ({"active": "2"}, "active"), ({"rss_bytes": -5}, "rss_bytes"), ({"version": "v\x00"}, "version"),
])
def test_bad_worker_heartbeats_are_refused(repo, arguments, field):
    with pytest.raises(ValidationError) as caught:
        repo.heartbeat_worker(**{"worker_id": "w1", "host": "alpha", "pid": 1, **arguments})
    assert caught.value.field == field
    assert repo.list_workers() == []
