"""Contract: idempotency keys — one claim wins, the first answer is replayed, a refused
first request is forgotten, keys expire and go with their session."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from repositories.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from repositories.records import Replay

DAY = timedelta(hours=24)


def test_the_first_claim_goes_ahead_and_its_answer_is_replayed(repo):
    assert repo.claim_request("d1", "body-a", ttl=DAY) is None
    with pytest.raises(IdempotencyKeyInFlight):
        repo.claim_request("d1", "body-a", ttl=DAY)
    repo.settle_request("d1", status=201, body='{"id": "x"}')
    assert repo.claim_request("d1", "body-a", ttl=DAY) == Replay(201, '{"id": "x"}')
    with pytest.raises(IdempotencyKeyReused):
        repo.claim_request("d1", "body-b", ttl=DAY)
    assert repo.claim_request("d2", "body-a", ttl=DAY) is None       # another digest is another request


def test_a_forgotten_claim_runs_anew(repo):
    assert repo.claim_request("d1", "body-a", ttl=DAY) is None
    repo.settle_request("d1", status=None)
    assert repo.claim_request("d1", "body-b", ttl=DAY) is None       # even with another body


def test_a_key_expires_after_its_lifetime(repo, clock):
    repo.claim_request("d1", "body-a", ttl=timedelta(minutes=5))
    repo.settle_request("d1", status=200, body="{}", keep=DAY)
    clock.advance(hours=23)
    assert repo.claim_request("d1", "body-a", ttl=DAY) == Replay(200, "{}")
    clock.advance(hours=1, seconds=1)
    assert repo.claim_request("d1", "body-b", ttl=DAY) is None


def test_an_unsettled_claim_lapses_after_its_ttl(repo, clock):
    repo.claim_request("d1", "body-a", ttl=timedelta(minutes=5))
    clock.advance(minutes=4)
    with pytest.raises(IdempotencyKeyInFlight):
        repo.claim_request("d1", "body-a", ttl=timedelta(minutes=5))
    clock.advance(minutes=2)
    assert repo.claim_request("d1", "body-a", ttl=timedelta(minutes=5)) is None


def test_keys_go_with_their_session_and_expired_ones_with_the_cleanup(repo, clock):
    session = repo.create(kind="batch", owner="ana")
    repo.claim_request("kept", "b", ttl=DAY)
    repo.settle_request("kept", status=201, body="{}", session_id=session.id)
    repo.claim_request("other", "b", ttl=DAY)
    repo.settle_request("other", status=200, body="{}")
    repo.start(session.id)
    repo.finish(session.id, state="completed")
    clock.advance(days=2)
    repo.claim_request("fresh", "b", ttl=DAY)
    repo.settle_request("fresh", status=200, body="{}", keep=DAY * 30)
    assert repo.cleanup(timedelta(days=1)).sessions == 1
    assert repo.claim_request("kept", "other-body", ttl=DAY) is None     # gone with its session
    assert repo.claim_request("other", "other-body", ttl=DAY) is None    # expired
    assert repo.claim_request("fresh", "b", ttl=DAY) == Replay(200, "{}")


def test_of_concurrent_claims_exactly_one_goes_ahead(repo):
    barrier, outcomes = threading.Barrier(8), []

    def claim():
        barrier.wait()
        try:
            outcomes.append(repo.claim_request("race", "body", ttl=DAY))
        except IdempotencyKeyInFlight:
            outcomes.append("in flight")

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(None) == 1 and outcomes.count("in flight") == 7
