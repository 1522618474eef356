"""The scheduler: which process runs a tick, and what the sweep and cleanup ticks do."""
from __future__ import annotations

from datetime import timedelta

import pytest

from repositories.memory import MemorySessionRepository
from repositories.sql import SqlSessionRepository
from webapp.scheduler import EPOCH, Scheduler
from webapp.settings import load_settings


class Clock:
    def __init__(self):
        from datetime import datetime, timezone
        self.now = datetime(2026, 3, 1, tzinfo=timezone.utc)

    def __call__(self):
        self.now += timedelta(microseconds=1)
        return self.now


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def repository(request, tmp_path):
    clock = Clock()
    if request.param == "memory":
        repo = MemorySessionRepository(clock=clock)
    else:
        url = (f"sqlite:///{tmp_path / 'scheduler.db'}" if request.param == "sqlite"
               else request.getfixturevalue("empty_postgres_url"))
        repo = SqlSessionRepository.from_url(url, clock=clock)
        repo.create_schema()
    repo.clock = clock
    yield repo
    repo.close()


def scheduler(repository, holder, **settings):
    return Scheduler(repository, load_settings({}, {"RUNBOARD_SWEEP_INTERVAL": "10s", **settings}), holder)


def at(tick, interval=10, offset=0.3):
    """A wall-clock time just after the start of tick number ``tick``."""
    return EPOCH.timestamp() + tick * interval + offset


def test_each_tick_runs_in_one_process_only(repository):
    first, second = scheduler(repository, "a"), scheduler(repository, "b")
    runs = []
    for s in (first, second):
        s.jobs["sweep"] = (10.0, lambda s=s: runs.append(s.holder))
    for tick in range(5):
        assert first.tick("sweep", now=at(tick)) is True
        assert second.tick("sweep", now=at(tick, offset=0.9)) is False
        assert first.tick("sweep", now=at(tick, offset=0.5)) is False       # and never twice
    assert runs == ["a"] * 5
    assert [t for t, _ in repository.list_ticks("sweep")] == [4, 3, 2, 1, 0]


def test_a_silent_lease_holder_is_replaced(repository):
    first, second = scheduler(repository, "a"), scheduler(repository, "b")
    assert first.lease == timedelta(seconds=25)
    assert first.tick("sweep", now=at(1))
    repository.clock.now += timedelta(seconds=26)          # a died: no renewal for 26 s
    assert second.tick("sweep", now=at(4))
    assert not first.tick("sweep", now=at(5))              # a is back, but b holds the lease
    assert repository.list_ticks("sweep") == [(4, "b"), (1, "a")]


def test_the_sweep_tick_fails_sessions_whose_heartbeat_is_lost(repository):
    session = repository.create(kind="k", owner="o")
    repository.start(session.id)
    fresh = repository.create(kind="k", owner="o")
    repository.clock.now += timedelta(seconds=90)
    repository.start(fresh.id)
    assert scheduler(repository, "a").sweep() == [session.id]
    assert repository.get(session.id).error == "heartbeat lost"
    assert repository.get(fresh.id).state.value == "running"


def test_the_cleanup_tick_applies_per_state_retention(repository):
    ids = {}
    for state in ("completed", "failed"):
        session = repository.create(kind="k", owner="o")
        repository.start(session.id)
        repository.finish(session.id, state)
        ids[state] = session.id
    live = repository.create(kind="k", owner="o")
    repository.start(live.id)
    repository.clock.now += timedelta(days=8)
    counts = scheduler(repository, "a", RUNBOARD_RETENTION="7d", RUNBOARD_RETENTION_FAILED="30d").cleanup()
    assert counts.sessions == 1
    assert repository.get(ids["failed"]).state.value == "failed"
    assert repository.get(live.id).state.value == "running"


def test_a_failing_tick_is_logged_and_the_next_one_still_runs(repository, caplog):
    s = scheduler(repository, "a")
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")

    s.jobs["sweep"] = (10.0, flaky)
    assert s.tick("sweep", now=at(1)) is False
    assert s.tick("sweep", now=at(2)) is True
    assert "scheduled sweep failed" in caplog.text


def test_apscheduler_runs_the_ticks_on_the_clock(repository):
    """The real BackgroundScheduler, with a one-second sweep: ticks arrive by themselves."""
    import time

    s = Scheduler(repository, load_settings({}, {"RUNBOARD_SWEEP_INTERVAL": "1s"}), "a")
    s.start()
    try:
        deadline = time.monotonic() + 10
        while len(repository.list_ticks("sweep")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        s.shutdown()
    ticks = [t for t, _ in repository.list_ticks("sweep")]
    assert len(ticks) >= 2 and ticks[0] - ticks[1] == 1


def test_background_work_starts_the_scheduler_only_when_it_is_on(tmp_path):
    from webapp import SCHEDULER_KEY, create_app, start_background_work
    from webapp.store import close_repository

    for setting, expected in (("off", False), ("on", True)):
        app = create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": setting})
        try:
            assert app.extensions[SCHEDULER_KEY]._scheduler is None          # never at creation
            start_background_work(app)
            assert (app.extensions[SCHEDULER_KEY]._scheduler is not None) is expected
        finally:
            close_repository(app)
