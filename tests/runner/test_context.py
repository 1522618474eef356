"""The run context: coalesced progress that loses nothing, buffered logs, heartbeats."""
from __future__ import annotations

import threading

from hypothesis import given, settings, strategies as st

from runner_support import wait_for
from repositories.memory import MemorySessionRepository
from repositories.merge import merge_progress
from webapp.runner.context import RunContext, compose

keys = st.sampled_from(["current", "total", "percent", "step", "nested", "other"])
leaves = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3))
values = st.recursive(leaves, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=6)
patches = st.dictionaries(keys, values, max_size=4)


@settings(max_examples=400, deadline=None)
@given(stored=st.dictionaries(keys, values, max_size=4), first=patches, second=patches)
def test_a_composed_patch_stores_exactly_what_the_two_reports_would(stored, first, second):
    stored = merge_progress({}, stored)
    sequential = merge_progress(merge_progress(stored, first), second)
    pending = dict(first)
    if compose(pending, second):
        assert merge_progress(stored, pending) == sequential


class CountingRepository(MemorySessionRepository):
    def __init__(self):
        super().__init__()
        self.reports = 0
        self.appends = 0

    def report_progress(self, session_id, **kwargs):
        self.reports += 1
        return super().report_progress(session_id, **kwargs)

    def append_logs(self, session_id, entries):
        self.appends += 1
        return super().append_logs(session_id, entries)


def running_session(repository):
    session = repository.create(kind="k", owner="o")
    repository.start(session.id)
    return session.id


def test_a_hot_loop_of_progress_calls_costs_a_handful_of_writes_and_keeps_the_last_value():
    repository = CountingRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    for n in range(100_000):
        context.progress(current=n, total=100_000)
    context.flush()
    assert repository.reports == 1
    assert repository.get(session_id).progress == {"current": 99_999, "total": 100_000, "percent": 100.0}


def test_progress_that_cannot_be_composed_is_written_in_order():
    repository = CountingRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    context.progress(detail="scalar")
    context.progress(detail={"inner": 1})          # a scalar, then an object: flush between
    context.flush()
    assert repository.get(session_id).progress == {"detail": {"inner": 1}}
    assert repository.reports == 2


def test_logs_are_written_in_batches_in_order_and_a_full_log_does_not_stop_the_job():
    repository = CountingRepository()
    repository._max_log_entries = 1500
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    for n in range(2500):
        context.log("info", f"line {n}", n=n)
    context.flush()
    entries = list(repository.iter_logs(session_id))
    assert [e.message for e in entries] == [f"line {n}" for n in range(1500)]
    assert context.dropped_logs == 1000            # what fits is kept, the rest dropped
    assert not context.abandoned


def test_an_overlong_message_is_cut_to_the_stores_limit_instead_of_failing():
    repository = MemorySessionRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id)
    context.log("error", "é" * 10_000)
    context.flush()
    stored = repository.read_logs(session_id).entries[0].message
    assert len(stored.encode()) <= 8 * 1024 and stored.endswith(" …")


def test_the_stop_flag_comes_back_on_a_report():
    repository = MemorySessionRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=0)
    repository.request_stop(session_id)
    assert not context.should_stop()
    context.progress(current=1)
    assert context.should_stop() and context.stop_seen


def test_a_session_finalized_elsewhere_abandons_the_context_and_stops_the_job():
    repository = MemorySessionRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=0)
    repository.finish(session_id, "failed", error="heartbeat lost")
    context.progress(current=1)
    assert context.abandoned and context.should_stop()
    assert repository.get(session_id).progress == {}


def test_concurrent_flushes_from_the_job_and_the_monitor_keep_log_order():
    repository = MemorySessionRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=0.001)
    done = threading.Event()

    def monitor():
        while not done.is_set():
            context.flush()

    thread = threading.Thread(target=monitor)
    thread.start()
    for n in range(3000):
        context.log("debug", str(n))
    done.set()
    thread.join()
    context.flush()
    assert [e.message for e in repository.iter_logs(session_id)] == [str(n) for n in range(3000)]
    assert [e.seq for e in repository.iter_logs(session_id)] == list(range(1, 3001))


def test_the_runner_heartbeats_a_job_that_reports_nothing(app_factory):
    from runner_support import runner_of, AUTH
    from job_support import Gate

    app = app_factory(RUNBOARD_HEARTBEAT_TIMEOUT="1s")
    gate = Gate()
    runner_of(app).kinds.register(gate.kind())
    client = app.test_client()
    session_id = client.post("/api/v1/sessions", json={"kind": "gated"}, headers=AUTH).json["id"]
    assert gate.entered.wait(10)
    repository = app.extensions["runboard"]
    first = wait_for(lambda: repository.get(session_id).heartbeat_at)
    wait_for(lambda: repository.get(session_id).heartbeat_at > first, timeout=5)
    assert repository.sweep_heartbeats(__import__("datetime").timedelta(seconds=1)) == []
    gate.released.set()
    wait_for(lambda: repository.get(session_id).state.value == "completed")


def test_the_process_registers_itself_as_a_worker(app):
    from runner_support import runner_of, AUTH

    runner_of(app).start()
    client = app.test_client()
    workers = wait_for(lambda: client.get("/api/v1/workers", headers=AUTH).json["workers"])
    me = runner_of(app).identity
    mine = [w for w in workers if w["worker_id"] == me.worker_id]
    assert mine and mine[0]["pid"] == me.pid and mine[0]["status"] == "ok"
    assert mine[0]["rss_bytes"] > 1_000_000 and mine[0]["version"] == me.version
    assert mine[0]["started_at"]
