"""The context against a store that is slow or unreachable: back-pressure instead of
dropped entries, and failed writes kept, in order, until the store takes them.

These doubles fail the way a SQL store does when its server is gone (an
``OperationalError`` raised before anything is stored); the runner-level tests in
``test_store_outage.py`` take real databases down."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

from hypothesis import given, settings, strategies as st
from sqlalchemy.exc import OperationalError

from job_support import Gate
from runner_support import send_patch, wait_for
from repositories.memory import MemorySessionRepository
from webapp.runner import KindRegistry, Runner
from webapp.runner.context import RunContext

keys = st.sampled_from(["current", "total", "percent", "step", "nested"])
leaves = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=2))
values = st.recursive(leaves, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=5)
patches = st.dictionaries(keys, values, min_size=1, max_size=3)


def unreachable() -> OperationalError:
    return OperationalError("INSERT …", {}, ConnectionError("server closed the connection unexpectedly"))


class FlakyRepository(MemorySessionRepository):
    """Fails the next ``outage`` calls before doing anything, or every call while ``down``
    (the calls the runner makes while a job runs)."""

    def __init__(self, **options):
        super().__init__(**options)
        self.outage, self.down, self.failures = 0, False, 0

    def _reach(self):
        if self.down or self.outage:
            self.outage = max(self.outage - 1, 0)
            self.failures += 1
            raise unreachable()

    def report_progress(self, session_id, **kwargs):
        self._reach()
        return super().report_progress(session_id, **kwargs)

    def append_logs(self, session_id, entries):
        self._reach()
        return super().append_logs(session_id, entries)

    def get(self, session_id):
        self._reach()
        return super().get(session_id)

    def heartbeat_worker(self, **kwargs):
        self._reach()
        return super().heartbeat_worker(**kwargs)


def running_session(repository):
    session_id = repository.create(kind="k", owner="o").id
    repository.start(session_id)
    return session_id


calls = st.lists(st.one_of(st.tuples(st.just("meta"), patches), st.tuples(st.just("progress"), patches),
                           st.tuples(st.just("log"), st.none()), st.tuples(st.just("usage"), st.none()),
                           st.tuples(st.just("flush"), st.none()),
                           st.tuples(st.just("outage"), st.integers(1, 3))), max_size=20)


@settings(max_examples=300, deadline=None)
@given(calls=calls)
def test_writes_that_fail_are_sent_later_in_order_and_lose_nothing(calls):
    """Unsent patches go back in front of newer ones: the store ends with what applying
    every patch in turn gives, and every entry exactly once, in order."""
    repository = FlakyRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    meta, progress, lines, tokens = {}, {}, [], 0
    for call, arg in calls:
        if call in ("meta", "progress"):
            meta, progress = send_patch(context, call, arg, meta, progress)
        elif call == "log":
            lines.append(f"line {len(lines)}")
            context.log("info", lines[-1])
        elif call == "usage":
            context.usage(tokens=1)
            tokens += 1
        elif call == "flush":
            context.flush()
        else:
            repository.outage = arg
    repository.outage = 0
    assert context.flush()
    session = repository.get(session_id)
    assert (session.meta, session.progress, session.usage["tokens"]) == (meta, progress, tokens)
    entries = list(repository.iter_logs(session_id))
    assert [e.message for e in entries] == lines
    assert [e.seq for e in entries] == list(range(1, len(lines) + 1))


def log_in_thread(context, count):
    """A job that logs ``count`` entries; ``returned`` counts the calls that came back."""
    returned, errors = [], []

    def job():
        try:
            for n in range(count):
                context.log("info", f"line {n}")
                returned.append(n)
        except Exception as exc:               # noqa: BLE001 - the test asserts there is none
            errors.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    return thread, returned, errors


def assert_stored_once_in_order(repository, session_id, count):
    entries = list(repository.iter_logs(session_id))
    assert [e.message for e in entries] == [f"line {n}" for n in range(count)]
    assert [e.seq for e in entries] == list(range(1, count + 1))


def test_a_full_buffer_blocks_log_while_the_store_is_slow_and_drops_nothing():
    class SlowRepository(MemorySessionRepository):
        def __init__(self):
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()

        def append_logs(self, session_id, entries):
            self.entered.set()
            assert self.release.wait(10)
            return super().append_logs(session_id, entries)

    repository = SlowRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60, max_buffered_logs=10)
    thread, returned, errors = log_in_thread(context, 100)
    assert repository.entered.wait(10)
    thread.join(0.2)                           # not a synchronisation: it must stay blocked
    assert thread.is_alive() and len(returned) == 10
    repository.release.set()
    thread.join(10)
    assert not thread.is_alive() and not errors
    context.flush()
    assert_stored_once_in_order(repository, session_id, 100)
    assert context.refused_logs == 0


def test_a_full_buffer_blocks_log_while_the_store_is_unreachable_and_resumes_when_it_is_back():
    repository = FlakyRepository()
    repository.down = True
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60, max_buffered_logs=10)
    thread, returned, errors = log_in_thread(context, 100)
    wait_for(lambda: repository.failures >= 3)     # retried with backoff, the job waiting
    assert thread.is_alive() and len(returned) == 10 and not errors
    assert context.backing_off()
    repository.down = False
    thread.join(10)
    assert not thread.is_alive() and not errors
    context.flush()
    assert_stored_once_in_order(repository, session_id, 100)


def test_another_writer_freeing_the_buffer_wakes_a_blocked_log():
    """The monitor's flush, say: the job waiting out the backoff need not wait it all."""
    repository = FlakyRepository()
    repository.down = True
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60, max_buffered_logs=10)
    thread, returned, errors = log_in_thread(context, 11)
    wait_for(lambda: repository.failures >= 5)     # the job now waits 1.6 s for its retry
    repository.down = False
    assert context.flush()                     # woken at once, not at the retry time
    thread.join(1.0)
    assert not thread.is_alive() and not errors
    context.flush()
    assert_stored_once_in_order(repository, session_id, 11)


def test_the_final_flush_waits_out_a_short_outage():
    repository = FlakyRepository()
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    context.log("info", "line 0")
    context.progress(current=1, total=2)
    repository.outage = 3
    assert context.final_flush(deadline=time.monotonic() + 10)
    assert repository.get(session_id).progress == {"current": 1, "total": 2, "percent": 50.0}
    assert_stored_once_in_order(repository, session_id, 1)


def test_the_final_flush_gives_up_at_its_deadline_and_says_so(caplog):
    repository = FlakyRepository()
    repository.down = True
    session_id = running_session(repository)
    context = RunContext(repository, session_id, flush_interval=60)
    context.log("info", "line 0")
    assert not context.final_flush(deadline=time.monotonic() + 0.5)
    assert any(r.name == "runboard.runner" and r.levelname == "ERROR" and "1 log entries" in r.getMessage()
               for r in caplog.records)


def test_the_monitor_outlives_an_unreachable_store_and_resumes_when_it_is_back():
    repository = FlakyRepository()
    runner = Runner(repository, KindRegistry(), threads=1, stop_grace=timedelta(seconds=30),
                    heartbeat_timeout=timedelta(seconds=1))
    gate = Gate()
    kind = gate.kind()
    session_id = repository.create(kind=kind.name, owner="o").id
    runner.submit(session_id, kind, kind.params())
    try:
        assert gate.entered.wait(10)
        first = wait_for(lambda: repository.get(session_id).heartbeat_at)
        repository.down = True
        wait_for(lambda: repository.failures >= 4)     # reads and heartbeats, tried again and again
        repository.down = False
        wait_for(lambda: repository.get(session_id).heartbeat_at > first)
        gate.released.set()
        wait_for(lambda: repository.get(session_id).state.value == "completed")
    finally:
        gate.released.set()
        runner.shutdown(timeout=5)
