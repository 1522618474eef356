"""Contract: idempotency keys — a request runs once per key, its answer is replayed, a
refused first request is forgotten, the request's writes and its kept answer stand or
fall together, keys expire and go with their session."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from repositories.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from repositories.records import Replay

DAY = timedelta(hours=24)


def answered(repo, digest, fingerprint, status=200, body="{}", session_id=None, *, keep=DAY):
    """Run a request under ``digest`` that answers ``status``/``body``; the replay a repeat
    got instead, or None when this one ran."""
    with repo.once(digest, fingerprint, keep=keep) as claim:
        if claim.replay is not None:
            return claim.replay
        claim.settle(status, body, session_id)
    return None


def test_the_first_request_runs_and_its_answer_is_replayed(repo):
    assert answered(repo, "d1", "body-a", 201, '{"id": "x"}') is None
    assert answered(repo, "d1", "body-a") == Replay(201, '{"id": "x"}')
    with pytest.raises(IdempotencyKeyReused):
        answered(repo, "d1", "body-b")
    assert answered(repo, "d2", "body-a") is None                  # another digest is another request


def test_an_unsettled_or_failed_request_is_forgotten_and_runs_anew(repo):
    with repo.once("d1", "body-a", keep=DAY) as claim:
        assert claim.replay is None                                # ends without an answer: a 4xx
    with pytest.raises(RuntimeError):
        with repo.once("d2", "body-a", keep=DAY):
            raise RuntimeError("the view failed")
    assert answered(repo, "d1", "body-b") is None                  # even with another body
    assert answered(repo, "d2", "body-b") is None


def test_the_requests_writes_and_its_answer_stand_or_fall_together(repo):
    """SQL: one transaction.  Memory: the writes are the block's own, and a failed block
    is not remembered, so its repeat runs anew (and, here, writes again)."""
    with pytest.raises(RuntimeError):
        with repo.once("d1", "body", keep=DAY):
            repo.create(kind="batch", owner="ana", label="first try")
            raise RuntimeError("died before answering")
    kept = repo.list_sessions(limit=10).items
    assert answered(repo, "d1", "body") is None
    if repo.name != "memory":
        assert kept == []                                          # rolled back with the claim


def test_a_repeat_while_the_first_runs_is_in_flight_or_waits_and_replays(repo):
    entered, release, outcome = threading.Event(), threading.Event(), []

    def first():
        with repo.once("d1", "body", keep=DAY) as claim:
            entered.set()
            release.wait(10)
            claim.settle(201, '{"first": true}')

    def repeat():
        try:
            outcome.append(answered(repo, "d1", "body"))
        except IdempotencyKeyInFlight:
            outcome.append("in flight")

    running = threading.Thread(target=first)
    running.start()
    assert entered.wait(10)
    repeating = threading.Thread(target=repeat)
    repeating.start()
    repeating.join(0.3)                        # not a synchronisation: the repeat must not run it
    release.set()
    running.join(10)
    repeating.join(10)
    assert outcome in (["in flight"], [Replay(201, '{"first": true}')])
    if repo.name != "memory":
        assert outcome == [Replay(201, '{"first": true}')]


def test_a_key_expires_after_its_lifetime(repo, clock):
    answered(repo, "d1", "body-a", keep=DAY)
    clock.advance(hours=23)
    assert answered(repo, "d1", "body-a") == Replay(200, "{}")
    clock.advance(hours=1, seconds=1)
    assert answered(repo, "d1", "body-b", 201, '{"again": 1}') is None
    assert answered(repo, "d1", "body-b") == Replay(201, '{"again": 1}')   # the expired claim was replaced
    with pytest.raises(IdempotencyKeyReused):
        answered(repo, "d1", "body-a")


def test_keys_go_with_their_session_and_expired_ones_with_the_cleanup(repo, clock):
    session = repo.create(kind="batch", owner="ana")
    answered(repo, "kept", "b", 201, "{}", session.id)
    answered(repo, "other", "b")
    repo.start(session.id)
    repo.finish(session.id, state="completed")
    clock.advance(days=2)
    answered(repo, "fresh", "b", keep=DAY * 30)
    assert repo.cleanup(timedelta(days=1)).sessions == 1
    assert answered(repo, "kept", "other-body") is None           # gone with its session
    assert answered(repo, "other", "other-body") is None          # expired
    assert answered(repo, "fresh", "b") == Replay(200, "{}")


def test_of_concurrent_repeats_exactly_one_runs(repo):
    barrier, outcomes = threading.Barrier(8), []

    def request():
        barrier.wait()
        try:
            outcomes.append(answered(repo, "race", "body", 201, '{"won": true}'))
        except IdempotencyKeyInFlight:
            outcomes.append("in flight")

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(None) == 1
    assert all(o in ("in flight", Replay(201, '{"won": true}')) for o in outcomes if o is not None)
