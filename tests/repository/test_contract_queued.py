"""Contract: queued sessions (SPEC §5).  The runner touches the pending sessions it holds
in its queue (``touch_queued``); the sweep fails the pending sessions of runner kinds
whose runner went silent (``sweep_queued``).  Staleness comes from the fake clock, and
races start on a barrier; nothing sleeps."""
from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import timedelta

import pytest

from race_support import run_together
from repositories.errors import InvalidTransition
from repositories.states import RUNNER_LOST, State

TIMEOUT = timedelta(seconds=60)
RUNNER_KINDS = ("batch", "monte_carlo")




def counts(repo):
    return repo.snapshot().counts


def queued(repo, kind="batch"):
    return repo.create(kind=kind, owner="ana")


# -- touch_queued ---------------------------------------------------------------------------
def test_touch_refreshes_only_pending_sessions_and_returns_how_many(repo, clock):
    first, second = queued(repo), queued(repo, kind="external")
    running = repo.start(queued(repo).id)
    failed = repo.finish(queued(repo).id, State.FAILED, error="could not start")
    cancelled = repo.request_stop(queued(repo).id)
    clock.advance(seconds=30)
    ids = [first.id, second.id, running.id, failed.id, cancelled.id, str(uuid.uuid4()), "not-an-id", first.id]
    assert repo.touch_queued(ids) == 2
    for session in (first, second):
        touched = repo.get(session.id)
        assert touched.state is State.PENDING
        assert touched.heartbeat_at == touched.updated_at > session.created_at + timedelta(seconds=30)
        assert touched.started_at is None
    assert repo.get(running.id) == running
    assert repo.get(failed.id) == failed
    assert repo.get(cancelled.id) == cancelled
    assert counts(repo) == {"pending": 2, "running": 1, "completed": 0, "failed": 1, "stopped": 1}


def test_touching_nothing_does_nothing(repo):
    session = queued(repo)
    assert repo.touch_queued([]) == 0
    assert repo.touch_queued(iter(())) == 0
    assert repo.touch_queued(["not-an-id", str(uuid.uuid4()), None, 42]) == 0
    assert repo.get(session.id) == session


def test_touch_accepts_any_iterable_and_an_id_in_any_case(repo):
    first, second = queued(repo), queued(repo)
    assert repo.touch_queued(s for s in (first.id.upper(), second.id)) == 2
    assert repo.get(first.id).heartbeat_at is not None


# -- sweep_queued -----------------------------------------------------------------------------
def test_the_sweep_fails_only_stale_pending_sessions_of_the_runner_kinds(repo, clock):
    never_touched = queued(repo)
    touched_long_ago = queued(repo, kind="monte_carlo")
    repo.touch_queued([touched_long_ago.id])
    kept_alive = queued(repo)
    external = queued(repo, kind="external")
    silent_runner = repo.start(queued(repo).id)           # running: sweep_heartbeats' business
    done = repo.start(queued(repo).id)
    repo.finish(done.id, State.COMPLETED)
    cancelled = repo.request_stop(queued(repo).id)
    clock.advance(minutes=5)
    repo.touch_queued([kept_alive.id])
    clock.advance(seconds=30)

    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == [never_touched.id, touched_long_ago.id]
    for session in (never_touched, touched_long_ago):
        lost = repo.get(session.id)
        assert lost.state is State.FAILED and lost.error == RUNNER_LOST
        assert lost.finished_at == lost.updated_at > session.created_at + timedelta(minutes=5)
        assert lost.started_at is None and lost.result is None
    assert repo.get(kept_alive.id).state is State.PENDING
    assert repo.get(external.id).state is State.PENDING
    assert repo.get(silent_runner.id) == silent_runner
    assert repo.get(done.id).state is State.COMPLETED
    assert repo.get(cancelled.id) == cancelled
    assert counts(repo) == {"pending": 2, "running": 1, "completed": 1, "failed": 2, "stopped": 1}


def test_the_error_names_the_lost_runner():
    assert RUNNER_LOST == "runner lost: the process that queued it ended before starting it"


def test_no_kinds_fails_nothing(repo, clock):
    session = queued(repo)
    clock.advance(hours=1)
    assert repo.sweep_queued(TIMEOUT, []) == []
    assert repo.sweep_queued(timedelta(0), iter(())) == []
    assert repo.get(session.id) == session


def test_a_kind_given_as_one_string_is_that_kind(repo, clock):
    session = queued(repo)
    clock.advance(minutes=5)
    assert repo.sweep_queued(TIMEOUT, "batch") == [session.id]


def test_a_pending_session_is_judged_by_its_last_touch_not_its_creation(repo, clock):
    session = queued(repo)
    clock.advance(minutes=5)
    repo.touch_queued([session.id])
    clock.advance(seconds=30)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == []
    clock.advance(seconds=31)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == [session.id]


def test_a_log_entry_on_a_queued_session_keeps_it_fresh_too(repo, clock):
    session = queued(repo)
    clock.advance(minutes=5)
    repo.append_logs(session.id, [{"level": "info", "message": "queued behind 3 jobs"}])
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == []


def test_creation_exactly_timeout_old_is_kept_and_one_microsecond_older_is_lost(repo, clock):
    clock.tick = timedelta(0)
    session = queued(repo)
    clock.set(session.created_at + TIMEOUT)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == []
    clock.advance(microseconds=1)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == [session.id]


def test_a_touch_exactly_timeout_old_is_kept_and_one_microsecond_older_is_lost(repo, clock):
    clock.tick = timedelta(0)
    session = queued(repo)
    clock.advance(minutes=10)
    repo.touch_queued([session.id])
    clock.set(repo.get(session.id).heartbeat_at + TIMEOUT)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == []
    clock.advance(microseconds=1)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == [session.id]


def test_a_zero_timeout_fails_every_pending_session_of_the_kinds(repo, clock):
    sessions = [queued(repo).id for _ in range(3)]
    assert repo.sweep_queued(timedelta(0), ["batch"]) == sessions


def test_a_second_sweep_finds_nothing_and_the_failure_is_final(repo, clock):
    session = queued(repo)
    clock.advance(minutes=5)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == [session.id]
    swept = repo.get(session.id)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == []
    assert repo.touch_queued([session.id]) == 0           # the runner is back: too late
    with pytest.raises(InvalidTransition):
        repo.start(session.id)
    with pytest.raises(InvalidTransition):
        repo.request_stop(session.id)
    assert repo.finish(session.id, State.FAILED, error="other") == swept   # a retry: no-op
    assert repo.get(session.id) == swept
    assert counts(repo) == {"pending": 0, "running": 0, "completed": 0, "failed": 1, "stopped": 0}


def test_the_sweep_keeps_what_a_queued_session_logged(repo, clock):
    session = queued(repo)
    repo.append_logs(session.id, [{"level": "info", "message": "queued"}])
    clock.advance(minutes=5)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == [session.id]
    assert [e.message for e in repo.read_logs(session.id).entries] == ["queued"]
    assert repo.get(session.id).log_count == 1


def test_swept_sessions_age_out_like_any_other_failed_session(repo, clock):
    session = queued(repo)
    clock.advance(minutes=5)
    assert repo.sweep_queued(TIMEOUT, RUNNER_KINDS) == [session.id]
    clock.advance(days=8)
    assert repo.cleanup(timedelta(days=7)).sessions == 1
    assert sum(counts(repo).values()) == 0


# -- under contention ---------------------------------------------------------------------------
def one_second_apart(repo, clock, n):
    """``n`` queued sessions created a second apart, the clock then set where none is stale
    yet: each further second makes the next one stale, so a sweep moving the clock meets
    racing threads in the middle of their work instead of before or after all of it."""
    ids = []
    for _ in range(n):
        clock.advance(seconds=1)
        ids.append(queued(repo).id)
    clock.set(repo.get(ids[0]).created_at + TIMEOUT)
    return ids


def sweeper(repo, clock, rounds, *, tick):
    def sweep():
        swept = []
        for _ in range(rounds):
            if tick:
                clock.advance(seconds=1)
            swept.extend(repo.sweep_queued(TIMEOUT, RUNNER_KINDS))
        return ("swept", swept)
    return sweep


def test_a_sweep_racing_starts_either_fails_or_lets_start_each_session_never_both(repo, clock):
    sessions = one_second_apart(repo, clock, 20)

    def starter(seed):
        order = sessions[:]
        random.Random(seed).shuffle(order)
        started = []
        for session_id in order:
            try:
                repo.start(session_id, worker_id=f"w{seed}")
            except InvalidTransition:
                continue
            started.append(session_id)
        return ("started", started)

    # Two sweepers: one moves the clock (a second per sweep, 22 in all: every session ends
    # stale), the other sweeps at whatever time it finds.
    results = run_together(*[lambda seed=seed: starter(seed) for seed in range(4)],
                           sweeper(repo, clock, 22, tick=True), sweeper(repo, clock, 22, tick=False))
    started = [s for what, ids in results if what == "started" for s in ids]
    swept = [s for what, ids in results if what == "swept" for s in ids]
    assert len(set(started)) == len(started), "a session was started twice"
    assert len(set(swept)) == len(swept), "a session was swept twice"
    assert not set(started) & set(swept), "a session was both started and swept"
    assert sorted(started + swept) == sorted(sessions)
    for session_id in sessions:
        session = repo.get(session_id)
        if session_id in started:
            assert session.state is State.RUNNING and session.error is None
        else:
            assert session.state is State.FAILED and session.error == RUNNER_LOST
            assert session.started_at is None
    assert counts(repo) == {"pending": 0, "running": len(started), "completed": 0,
                            "failed": len(swept), "stopped": 0}


def test_concurrent_sweeps_fail_each_stale_session_exactly_once(repo, clock):
    stale = {queued(repo, kind=RUNNER_KINDS[i % 2]).id for i in range(30)}
    external = queued(repo, kind="external").id
    clock.advance(minutes=5)
    fresh = queued(repo).id
    results = run_together(*[lambda: repo.sweep_queued(TIMEOUT, RUNNER_KINDS)] * 4)
    swept = [session_id for result in results for session_id in result]
    assert Counter(swept) == Counter(stale), "a session was swept twice or not at all"
    assert repo.get(fresh).state is State.PENDING and repo.get(external).state is State.PENDING
    assert counts(repo) == {"pending": 2, "running": 0, "completed": 0, "failed": 30, "stopped": 0}


def test_a_touch_racing_a_sweep_saves_exactly_the_sessions_it_touched(repo, clock):
    sessions = one_second_apart(repo, clock, 20)

    def toucher(seed):
        order = sessions[:]
        random.Random(seed).shuffle(order)
        return ("touched", [s for s in order if repo.touch_queued([s]) == 1])

    # The clock moves 22 s in all: every session ends stale unless touched, and none
    # touched goes stale again.
    results = run_together(*[lambda seed=seed: toucher(seed) for seed in range(4)],
                           sweeper(repo, clock, 22, tick=True), sweeper(repo, clock, 22, tick=False))
    touched = {s for what, ids in results if what == "touched" for s in ids}
    swept = [s for what, ids in results if what == "swept" for s in ids]
    assert len(set(swept)) == len(swept), "a session was swept twice"
    assert not touched & set(swept), "a session was touched after it was failed, or failed after a touch"
    assert touched | set(swept) == set(sessions)
    for session_id in sessions:
        session = repo.get(session_id)
        assert session.state is (State.PENDING if session_id in touched else State.FAILED)
    assert counts(repo) == {"pending": len(touched), "running": 0, "completed": 0, "failed": len(swept),
                            "stopped": 0}


def test_one_touch_of_many_sessions_racing_a_sweep_counts_what_it_saved(repo, clock):
    sessions = [queued(repo).id for _ in range(30)]
    clock.advance(minutes=5)
    touched, swept = run_together(lambda: repo.touch_queued(sessions),
                                  lambda: repo.sweep_queued(TIMEOUT, RUNNER_KINDS))
    assert touched + len(swept) == len(sessions)
    still_pending = [s for s in sessions if repo.get(s).state is State.PENDING]
    assert len(still_pending) == touched and not set(still_pending) & set(swept)
    assert counts(repo) == {"pending": touched, "running": 0, "completed": 0, "failed": len(swept),
                            "stopped": 0}
