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


def test_a_worker_that_comes_back_after_a_sweep_cannot_overwrite_the_failure(repo, clock):
    session = running(repo)
    clock.advance(minutes=5)
    repo.sweep_heartbeats(timedelta(seconds=60))
    swept = repo.get(session.id)
    with pytest.raises(InvalidTransition):
        repo.finish(session.id, State.COMPLETED, result={"late": True})
    assert repo.finish(session.id, State.FAILED, error="worker crashed") == swept   # a retry: no-op
    assert repo.get(session.id).error == "heartbeat lost"


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
        repo.usage(by="week")
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


def test_a_worker_heartbeats_under_the_longest_id_it_may_start_sessions_under(repo):
    worker_id = "celery@" + "w" * 249                  # 256 characters: the most a start takes
    session = repo.create(kind="k", owner="o")
    started = repo.start(session.id, worker_id=worker_id)
    repo.heartbeat_worker(worker_id=worker_id, host="alpha", pid=1, active=1)
    assert [w.worker_id for w in repo.list_workers()] == [started.worker_id] == [worker_id]


@pytest.mark.parametrize("arguments, field", [
    ({"worker_id": ""}, "worker_id"), ({"worker_id": "w" * 257}, "worker_id"), ({"host": "h" * 257}, "host"),
    ({"pid": -1}, "pid"), ({"active": "2"}, "active"), ({"rss_bytes": -5}, "rss_bytes"), ({"version": "v\x00"}, "version"),
])
def test_bad_worker_heartbeats_are_refused(repo, arguments, field):
    with pytest.raises(ValidationError) as caught:
        repo.heartbeat_worker(**{"worker_id": "w1", "host": "alpha", "pid": 1, **arguments})
    assert caught.value.field == field
    assert repo.list_workers() == []


def test_a_heartbeat_exactly_timeout_old_is_kept_and_one_microsecond_older_is_lost(repo, clock):
    clock.tick = timedelta(0)
    session = running(repo)
    clock.set(session.heartbeat_at + timedelta(seconds=60))
    assert repo.sweep_heartbeats(timedelta(seconds=60)) == []
    clock.advance(microseconds=1)
    assert repo.sweep_heartbeats(timedelta(seconds=60)) == [session.id]


def test_the_sweep_returns_every_stale_session_and_keeps_what_they_reported(repo, clock):
    stale = [running(repo) for _ in range(4)]
    for session in stale:
        repo.report_progress(session.id, progress={"current": 2, "total": 4})
        repo.append_logs(session.id, [{"level": "info", "message": "last words"}])
    repo.request_stop(stale[0].id)
    clock.advance(minutes=2)
    assert sorted(repo.sweep_heartbeats(timedelta(seconds=60))) == sorted(s.id for s in stale)
    for session in stale:
        failed = repo.get(session.id)
        assert failed.progress == {"current": 2, "total": 4, "percent": 50.0}
        assert [e.message for e in repo.read_logs(session.id).entries] == ["last words"]
    assert repo.snapshot().counts["failed"] == 4


def test_a_session_finished_exactly_at_the_cutoff_is_kept_until_it_is_older(repo, clock):
    clock.tick = timedelta(0)
    done = finished_with_logs(repo, State.COMPLETED, 1)
    clock.set(done.finished_at + timedelta(days=7))
    assert repo.cleanup(timedelta(days=7)) == CleanupCounts(0, 0)
    clock.advance(microseconds=1)
    assert repo.cleanup(timedelta(days=7), dry_run=True) == CleanupCounts(1, 1)
    assert repo.cleanup(timedelta(days=7)) == CleanupCounts(1, 1)


def test_swept_sessions_age_out_like_any_other_finished_session(repo, clock):
    session = running(repo)
    clock.advance(minutes=5)
    repo.sweep_heartbeats(timedelta(seconds=60))
    clock.advance(days=8)
    assert repo.cleanup(timedelta(days=7)) == CleanupCounts(1, 0)
    with pytest.raises(SessionNotFound):
        repo.get(session.id)


def test_cleanup_of_many_sessions_counts_each_exactly_once(repo, clock, monkeypatch):
    import repositories.sql.maintenance as sql_maintenance

    monkeypatch.setattr(sql_maintenance, "CLEANUP_BATCH", 4)      # several batches on SQL
    for i in range(11):
        finished_with_logs(repo, State.COMPLETED if i % 2 else State.FAILED, i % 3)
    clock.advance(days=8)
    expected = CleanupCounts(11, sum(i % 3 for i in range(11)))
    assert repo.cleanup(timedelta(days=7), dry_run=True) == expected
    assert repo.cleanup(timedelta(days=7)) == expected
    assert repo.snapshot().counts == {s.value: 0 for s in State}


def test_removed_sessions_leave_lists_and_a_cursor_pointing_at_them_still_pages(repo, clock):
    old = [finished_with_logs(repo, State.COMPLETED, 0).id for _ in range(3)]
    clock.advance(days=8)
    newer = [repo.create(kind="batch", owner="ana").id for _ in range(3)]
    keep_old = repo.create(kind="batch", owner="ana").id
    newest = [repo.create(kind="batch", owner="ana").id for _ in range(2)]
    # Newest first: newest[1], newest[0], keep_old, newer[2], newer[1], newer[0], old[2], old[1], old[0].
    ids = [s.id for s in repo.list_sessions(limit=200).items]
    assert ids == list(reversed(old + newer + [keep_old] + newest))
    first = repo.list_sessions(limit=7)                       # ends on old[2]
    assert [s.id for s in first.items][-1] == old[2]
    repo.cleanup(timedelta(days=7))
    assert {s.id for s in repo.list_sessions(limit=200).items}.isdisjoint(old)
    assert repo.list_sessions(cursor=first.next_cursor).items == []
    second = repo.list_sessions(limit=2)
    assert [s.id for s in repo.list_sessions(cursor=second.next_cursor).items] == [keep_old] + list(reversed(newer))
    assert not ({s.id for b in repo.snapshot().sessions.values() for s in b} & set(old))


def test_usage_counts_each_session_in_the_hour_it_was_created(repo, clock):
    for owner in ("ana", "ana", "bob"):
        repo.create(kind="batch", owner=owner)
    repo.request_stop(repo.create(kind="batch", owner="bob").id)
    assert [(r.key, r.sessions, r.tokens, r.cost) for r in repo.usage(by="owner")] == [
        ("ana", 2, 0, 0.0), ("bob", 2, 0, 0.0)]


def test_usage_since_a_later_hour_keeps_later_tokens_but_not_earlier_creations(repo, clock):
    session = running(repo)
    repo.report_progress(session.id, usage={"tokens": 1, "cost": 0.5})
    clock.advance(hours=2)
    since = clock.now
    repo.report_progress(session.id, usage={"tokens": 10, "cost": 1.25})
    assert [(r.key, r.sessions, r.tokens, r.cost) for r in repo.usage(by="kind", since=since)] == [
        ("batch", 0, 10, 1.25)]
    assert [(r.key, r.sessions, r.tokens, r.cost) for r in repo.usage(by="kind")] == [("batch", 1, 11, 1.75)]


def test_usage_for_an_owner_with_nothing_is_empty(repo):
    running(repo)
    assert repo.usage(by="owner", owner="nobody") == []


def test_a_worker_heartbeat_returns_what_list_workers_shows(repo, clock):
    returned = repo.heartbeat_worker(worker_id="w1", host="alpha", pid=10, active=3, rss_bytes=2**40,
                                     version="2.1")
    assert repo.list_workers() == [returned]
    assert returned.last_seen.utcoffset() == timedelta(0) and returned.last_seen <= clock.now


def test_a_workers_started_at_is_its_first_heartbeat_and_stays(repo, clock):
    first = repo.heartbeat_worker(worker_id="w1", host="alpha", pid=10)
    clock.advance(seconds=30)
    later = repo.heartbeat_worker(worker_id="w1", host="alpha", pid=10, active=1)
    assert first.started_at == later.started_at == repo.list_workers()[0].started_at
    assert timedelta(seconds=30) <= later.last_seen - later.started_at < timedelta(seconds=31)


def test_cleanup_by_state_removes_only_those_states(repo, clock):
    kept, removed = [], []
    for state, bucket in (("failed", kept), ("completed", removed), ("stopped", removed)):
        session = repo.create(kind="k", owner="o")
        repo.start(session.id)
        repo.append_logs(session.id, [{"level": "info", "message": "x"}] * 3)
        repo.finish(session.id, state)
        bucket.append(session.id)
    clock.advance(days=10)
    assert repo.cleanup(timedelta(days=7), states=["completed", "stopped"], dry_run=True) == CleanupCounts(2, 6)
    assert repo.cleanup(timedelta(days=7), states=[State.COMPLETED, "stopped"]) == CleanupCounts(2, 6)
    assert [repo.get(i).state.value for i in kept] == ["failed"]
    for session_id in removed:
        with pytest.raises(SessionNotFound):
            repo.get(session_id)


@pytest.mark.parametrize("state", ["running", "pending", "bogus"])
def test_cleanup_refuses_live_or_unknown_states(repo, state):
    with pytest.raises(ValidationError) as caught:
        repo.cleanup(timedelta(days=1), states=[state])
    assert caught.value.field == "state"


LEASE = timedelta(seconds=10)


def test_a_tick_runs_once_and_only_under_the_lease(repo, clock):
    assert repo.claim_tick("sweep", 1, holder="a", lease=LEASE) is True
    assert repo.claim_tick("sweep", 1, holder="a", lease=LEASE) is False      # never twice
    assert repo.claim_tick("sweep", 2, holder="b", lease=LEASE) is False      # a holds the lease
    assert repo.claim_tick("cleanup", 1, holder="a", lease=LEASE) is True     # one lease, many jobs
    clock.advance(seconds=9)
    assert repo.claim_tick("sweep", 2, holder="a", lease=LEASE) is True       # renewed
    clock.advance(seconds=9)
    assert repo.claim_tick("sweep", 3, holder="b", lease=LEASE) is False      # still a's
    clock.advance(seconds=2)
    assert repo.claim_tick("sweep", 3, holder="b", lease=LEASE) is True       # a went silent
    assert repo.claim_tick("sweep", 4, holder="a", lease=LEASE) is False      # b holds it now
    assert repo.list_ticks("sweep") == [(3, "b"), (2, "a"), (1, "a")]


def test_racing_claims_run_every_tick_exactly_once(repo):
    import threading

    holders, ticks = [f"p{n}" for n in range(8)], range(1, 61)
    won: list[tuple[int, str]] = []
    barrier = threading.Barrier(len(holders))

    def contend(holder):
        barrier.wait()
        for tick in ticks:
            if repo.claim_tick("sweep", tick, holder=holder, lease=timedelta(0)):
                won.append((tick, holder))

    threads = [threading.Thread(target=contend, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(t for t, _ in won) == list(ticks)
    assert sorted(repo.list_ticks("sweep")) == sorted(won)


@pytest.mark.parametrize("by", ["owner", "kind", "engine", "day"])
def test_daily_and_hourly_rollups_agree(repo, clock, by):
    from datetime import datetime, timezone

    for n in range(12):
        session = repo.start(repo.create(kind=f"k{n % 3}", owner=f"o{n % 2}", meta={"engine": f"e{n % 2}"}).id)
        repo.report_progress(session.id, progress={"n": n}, usage={"tokens": n + 1, "cost": 0.25 * n})
        clock.advance(hours=7)
    whole_days = repo.usage(by=by)                                        # the daily rollups
    by_hours = repo.usage(by=by, since=datetime(2000, 1, 1, 0, 0, 1, tzinfo=timezone.utc))   # the hourly ones
    assert whole_days == by_hours and sum(r.tokens for r in whole_days) == sum(range(1, 13))
