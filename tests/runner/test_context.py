"""The run context: coalesced progress that loses nothing, buffered logs, heartbeats."""
from __future__ import annotations

import copy
import threading

from hypothesis import given, settings, strategies as st

from runner_support import send_patch, wait_for
from repositories.memory import MemorySessionRepository
from repositories.merge import merge_progress
from webapp.runner.context import RunContext
from runboard.patches import PROGRESS_DERIVED, compose

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
    if compose(pending, second, derived=PROGRESS_DERIVED):
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
    repository._max_log_entries = 1500             # smaller than the context believes
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    for n in range(2500):
        context.log("info", f"line {n}", n=n)
    context.flush()
    entries = list(repository.iter_logs(session_id))
    # What fits is kept, but for one slot: the final flush says how many were refused.
    assert [e.message for e in entries] == [f"line {n}" for n in range(1499)]
    assert context.refused_logs == 1001
    assert not context.abandoned
    assert context.final_flush(deadline=0)
    last = list(repository.iter_logs(session_id))[-1]
    assert (last.seq, last.level) == (1500, "warning")
    assert last.message == "1001 log entries were not stored: the session's log holds at most 1500 entries"


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


nonempty_patches = st.dictionaries(keys, values, min_size=1, max_size=4)
calls = st.lists(st.one_of(st.tuples(st.just("meta"), nonempty_patches),
                           st.tuples(st.just("progress"), nonempty_patches),
                           st.tuples(st.just("flush"), st.none())), max_size=12)


@settings(max_examples=300, deadline=None)
@given(stored=st.dictionaries(keys, values, max_size=4), calls=calls)
def test_meta_and_progress_patches_store_what_applying_each_in_turn_gives(stored, calls):
    """Nested meta composes like progress (RFC 7396), with flushes at random points; meta
    has no derived ``percent``, so a meta ``percent`` is just a key."""
    repository = MemorySessionRepository()
    session_id = repository.create(kind="k", owner="o", meta=stored).id
    repository.start(session_id)
    context = RunContext(repository, session_id, flush_interval=60)
    meta, progress = copy.deepcopy(stored), {}        # create() stores meta as given
    for call, patch in calls:
        if call == "flush":
            context.flush()
        else:
            meta, progress = send_patch(context, call, patch, meta, progress)
    context.flush()
    session = repository.get(session_id)
    assert session.meta == meta
    assert session.progress == progress


def test_nested_meta_written_between_flushes_keeps_every_key():
    repository = CountingRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    context.meta(opts={"a": 1})
    context.meta(opts={"b": 2})
    context.meta(opts={"deep": {"x": 1}}, percent=5)
    context.meta(opts={"deep": {"y": 2}})
    context.flush()
    assert repository.get(session_id).meta == {"opts": {"a": 1, "b": 2, "deep": {"x": 1, "y": 2}}, "percent": 5}
    assert repository.reports == 1


def test_over_the_cap_the_log_ends_with_one_warning_naming_how_many_were_refused():
    repository = MemorySessionRepository(max_log_entries=5)
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=0, max_log_entries=5)
    for n in range(20):                            # one entry per write: the log fills exactly
        context.log("info", f"line {n}")
    assert context.refused_logs == 16 and not context.abandoned
    assert context.final_flush(deadline=0)
    entries = list(repository.iter_logs(session_id))
    assert [e.message for e in entries[:4]] == [f"line {n}" for n in range(4)]
    assert [(e.seq, e.level, e.message) for e in entries[4:]] == [
        (5, "warning", "16 log entries were not stored: the session's log holds at most 5 entries")]


def test_the_reporting_core_cuts_messages_and_batches_to_the_stores_limits():
    from repositories import validation
    from runboard import transport

    assert transport.MAX_MESSAGE_BYTES == validation.MAX_MESSAGE_BYTES
    assert transport.LOG_BATCH == validation.MAX_LOG_BATCH
    assert transport.LEVELS == tuple(validation.LOG_LEVELS)


def test_every_entry_keeps_the_time_it_was_logged_not_the_time_its_batch_was_stored():
    repository = MemorySessionRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    for n in range(3):
        context.log("info", f"line {n}")
    context.flush()
    entries = list(repository.iter_logs(session_id))
    assert len({e.ts for e in entries}) == 1                   # one batch, one stored time
    ats = [e.at for e in entries]
    assert all(ats) and ats == sorted(ats) and len(set(ats)) == 3 and ats[-1] <= entries[0].ts
