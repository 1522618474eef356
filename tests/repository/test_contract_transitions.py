"""Contract: SPEC §1's state diagram, progress merge, stop and finish, on every store."""
from __future__ import annotations

import pytest

from repositories.errors import InvalidTransition, SessionNotFound, ValidationError
from repositories.states import State

TERMINAL = [State.COMPLETED, State.FAILED, State.STOPPED]


def in_state(repo, state: State, **create):
    """A session brought to ``state`` through legal moves only."""
    session = repo.create(kind="batch", owner="ana@example.com", label="in.csv", **create)
    if state is State.PENDING:
        return repo.get(session.id)
    if state is State.STOPPED:
        return repo.request_stop(session.id)
    repo.start(session.id)
    if state is State.RUNNING:
        return repo.get(session.id)
    return repo.finish(session.id, state)


# (from state, action, argument) -> resulting state, or None when refused with 409.
MATRIX = [
    (State.PENDING, "start", None, State.RUNNING),
    (State.PENDING, "stop", None, State.STOPPED),
    (State.PENDING, "finish", State.COMPLETED, None),
    (State.PENDING, "finish", State.FAILED, State.FAILED),
    (State.PENDING, "finish", State.STOPPED, State.STOPPED),
    (State.PENDING, "progress", None, None),
    (State.PENDING, "logs", None, State.PENDING),
    (State.RUNNING, "start", None, None),
    (State.RUNNING, "stop", None, State.RUNNING),
    (State.RUNNING, "finish", State.COMPLETED, State.COMPLETED),
    (State.RUNNING, "finish", State.FAILED, State.FAILED),
    (State.RUNNING, "finish", State.STOPPED, State.STOPPED),
    (State.RUNNING, "progress", None, State.RUNNING),
    (State.RUNNING, "logs", None, State.RUNNING),
] + [
    row for terminal in TERMINAL for row in [
        (terminal, "start", None, None),
        (terminal, "stop", None, None),
        (terminal, "progress", None, None),
        (terminal, "logs", None, None),
    ] + [(terminal, "finish", target, terminal if target is terminal else None) for target in TERMINAL]
]


def act(repo, session_id, action, argument):
    if action == "start":
        return repo.start(session_id)
    if action == "stop":
        return repo.request_stop(session_id)
    if action == "finish":
        return repo.finish(session_id, argument)
    if action == "progress":
        return repo.report_progress(session_id, progress={"current": 1})
    return repo.append_logs(session_id, [{"level": "info", "message": "m"}])


@pytest.mark.parametrize("current, action, argument, expected", MATRIX,
                         ids=[f"{c.value}-{a}-{x.value if x else ''}" for c, a, x, _ in MATRIX])
def test_the_state_diagram_is_enforced(repo, current, action, argument, expected):
    session = in_state(repo, current)
    before = repo.get(session.id)
    if expected is None:
        with pytest.raises(InvalidTransition):
            act(repo, session.id, action, argument)
        assert repo.get(session.id) == before            # a refused move changes nothing
    else:
        act(repo, session.id, action, argument)
        assert repo.get(session.id).state is expected
        assert repo.snapshot().counts[expected.value] == 1


def test_start_sets_started_at_and_the_heartbeat(repo):
    session = repo.start(repo.create(kind="batch", owner="ana").id)
    assert session.state is State.RUNNING
    assert session.started_at == session.heartbeat_at == session.updated_at
    assert session.started_at > session.created_at


@pytest.mark.parametrize("method", ["start", "request_stop"])
def test_transitions_on_unknown_sessions_are_not_found(repo, method):
    with pytest.raises(SessionNotFound):
        getattr(repo, method)("6f1c2f9e-8a55-4c39-9a1e-2b7d0f9c1a11")


def test_finish_writes_state_result_error_and_finished_at_together(repo):
    session = in_state(repo, State.RUNNING)
    failed = repo.finish(session.id, State.FAILED, result={"partial": [1, 2]}, error="ValueError: x")
    assert failed.state is State.FAILED and failed.result == {"partial": [1, 2]}
    assert failed.error == "ValueError: x"
    assert failed.finished_at == failed.updated_at and failed.finished_at is not None
    assert repo.get(session.id) == failed


@pytest.mark.parametrize("terminal", TERMINAL)
def test_repeating_the_same_finish_changes_nothing_not_even_updated_at(repo, terminal):
    session = in_state(repo, State.RUNNING)
    first = repo.finish(session.id, terminal, result={"n": 1})
    again = repo.finish(session.id, terminal, result={"n": 2}, error="ignored")
    assert again == first == repo.get(session.id)


@pytest.mark.parametrize("target", ["pending", "running", "done"])
def test_finish_to_a_non_terminal_state_is_a_validation_error(repo, target):
    session = in_state(repo, State.RUNNING)
    with pytest.raises(ValidationError) as caught:
        repo.finish(session.id, target)
    assert caught.value.field == "state"
    assert repo.get(session.id).state is State.RUNNING


def test_stopping_a_pending_session_cancels_it(repo):
    session = repo.request_stop(in_state(repo, State.PENDING).id)
    assert session.state is State.STOPPED and session.finished_at is not None
    assert session.stop_requested


def test_stopping_a_running_session_only_raises_the_flag_the_worker_sees(repo):
    session = in_state(repo, State.RUNNING)
    stopped = repo.request_stop(session.id)
    assert stopped.state is State.RUNNING and stopped.stop_requested and stopped.finished_at is None
    ack = repo.report_progress(session.id, progress={"current": 3})
    assert ack.state is State.RUNNING and ack.stop_requested is True
    assert repo.finish(session.id, State.STOPPED, result={"partial": 3}).result == {"partial": 3}


def test_progress_merges_key_by_key_and_null_removes(repo):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, progress={"step": "load", "current": 1, "total": 4,
                                               "nested": {"a": 1, "b": 2}})
    repo.report_progress(session.id, progress={"current": 2, "step": None, "nested": {"b": None, "c": 3}})
    assert repo.get(session.id).progress == {"current": 2, "total": 4, "percent": 50.0,
                                             "nested": {"a": 1, "c": 3}}


@pytest.mark.parametrize("progress, percent", [
    ({"current": 1, "total": 3}, 33.3),
    ({"current": 2, "total": 3}, 66.7),
    ({"current": 0, "total": 10}, 0.0),
    ({"current": 15, "total": 10}, 100.0),
    ({"current": -5, "total": 10}, 0.0),
    ({"current": 1.5, "total": 2}, 75.0),
])
def test_percent_is_derived_from_current_and_total(repo, progress, percent):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, progress=progress)
    assert repo.get(session.id).progress["percent"] == percent


@pytest.mark.parametrize("progress", [
    {"current": 1, "total": 0}, {"current": "1", "total": 3}, {"current": 1}, {"current": True, "total": 2},
])
def test_percent_is_not_derived_without_numeric_current_and_positive_total(repo, progress):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, progress=progress)
    assert "percent" not in repo.get(session.id).progress


def test_a_sent_percent_wins_over_the_derived_one(repo):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, progress={"current": 1, "total": 4, "percent": 90})
    assert repo.get(session.id).progress["percent"] == 90


def test_meta_merges_the_same_way_and_usage_accumulates(repo):
    session = in_state(repo, State.RUNNING, meta={"engine": "numpy", "original_filename": "in.csv"})
    repo.report_progress(session.id, meta={"gpu": "none", "engine": None}, usage={"tokens": 5, "cost": 0.25})
    repo.report_progress(session.id, usage={"tokens": 7})
    stored = repo.get(session.id)
    assert stored.meta == {"original_filename": "in.csv", "gpu": "none"}
    assert stored.usage == {"tokens": 12, "cost": 0.25}


def test_a_report_refreshes_heartbeat_and_updated_at_and_returns_state(repo, clock):
    session = in_state(repo, State.RUNNING)
    clock.advance(seconds=5)
    ack = repo.report_progress(session.id)
    after = repo.get(session.id)
    assert ack.state is State.RUNNING and ack.stop_requested is False
    assert after.heartbeat_at == after.updated_at > session.heartbeat_at


@pytest.mark.parametrize("usage, field", [
    ({"tokens": -1}, "usage.tokens"), ({"tokens": 1.5}, "usage.tokens"), ({"cost": "1"}, "usage.cost"),
    ({"cost": -0.1}, "usage.cost"), ({"cost": float("nan")}, "usage.cost"), ({"dollars": 1}, "usage.dollars"),
])
def test_bad_usage_is_refused_and_nothing_is_written(repo, usage, field):
    session = in_state(repo, State.RUNNING)
    before = repo.get(session.id)
    with pytest.raises(ValidationError) as caught:
        repo.report_progress(session.id, progress={"current": 9}, usage=usage)
    assert caught.value.field == field
    assert repo.get(session.id) == before


def test_non_object_progress_or_meta_is_refused(repo):
    session = in_state(repo, State.RUNNING)
    with pytest.raises(ValidationError):
        repo.report_progress(session.id, progress=[1, 2])
    with pytest.raises(ValidationError):
        repo.report_progress(session.id, meta="x")


@pytest.mark.parametrize("progress", [
    {"x": float("nan")}, {"x": float("inf")}, {"x": {"y": [float("-inf")]}}, {1: "int key"},
    {"x": "\ud800"}, {"x": object()},
])
def test_values_no_store_can_keep_exactly_are_refused(repo, progress):
    session = in_state(repo, State.RUNNING)
    with pytest.raises(ValidationError) as caught:
        repo.report_progress(session.id, progress=progress)
    assert caught.value.field == "progress"


def test_nesting_deeper_than_the_limit_is_refused(repo):
    session = in_state(repo, State.RUNNING)
    deep = {}
    for _ in range(40):
        deep = {"d": deep}
    with pytest.raises(ValidationError):
        repo.report_progress(session.id, meta=deep)


def test_json_text_round_trips_exactly_including_big_floats_and_nul_escapes(repo):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, progress={"big": 4.594893881711002e+16, "nul": "a\x00b", "f": 0.1})
    assert repo.get(session.id).progress == {"big": 4.594893881711002e+16, "nul": "a\x00b", "f": 0.1}


@pytest.mark.parametrize("arguments, field", [
    ({"label": "a\x00b"}, "label"), ({"owner": "a\x00"}, "owner"), ({"label": "\udc80"}, "label"),
])
def test_text_no_database_can_store_is_refused_at_create(repo, arguments, field):
    with pytest.raises(ValidationError) as caught:
        repo.create(kind="batch", **{"owner": "ana", **arguments})
    assert caught.value.field == field


UNKNOWN_IDS = ["6f1c2f9e-8a55-4c39-9a1e-2b7d0f9c1a11", "not-a-uuid", ""]


@pytest.mark.parametrize("session_id", UNKNOWN_IDS)
@pytest.mark.parametrize("call", [
    lambda repo, i: repo.start(i),
    lambda repo, i: repo.request_stop(i),
    lambda repo, i: repo.report_progress(i, progress={"current": 1}),
    lambda repo, i: repo.finish(i, State.FAILED, error="x"),
], ids=["start", "stop", "progress", "finish"])
def test_every_transition_on_an_unknown_or_malformed_id_is_not_found(repo, call, session_id):
    with pytest.raises(SessionNotFound):
        call(repo, session_id)


def test_every_write_moves_updated_at_forward(repo, clock):
    session = repo.create(kind="batch", owner="ana")
    stamps = [session.updated_at]
    writes = [
        lambda: repo.append_logs(session.id, [{"level": "info", "message": "queued"}]),
        lambda: repo.start(session.id),
        lambda: repo.report_progress(session.id, progress={"current": 1}),
        lambda: repo.append_logs(session.id, [{"level": "info", "message": "working"}]),
        lambda: repo.request_stop(session.id),
        lambda: repo.finish(session.id, State.STOPPED, result={"partial": 1}),
    ]
    for write in writes:
        clock.advance(seconds=1)
        write()
        stamps.append(repo.get(session.id).updated_at)
    assert stamps == sorted(set(stamps)), "some write left updated_at where it was"


def test_a_report_never_touches_identity_params_or_lifecycle_timestamps(repo, clock):
    session = in_state(repo, State.RUNNING, params={"n": 1}, meta={"engine": "numpy"})
    clock.advance(seconds=1)
    repo.report_progress(session.id, progress={"current": 1}, meta={"x": 1}, usage={"tokens": 1})
    after = repo.get(session.id)
    for field in ("id", "kind", "label", "owner", "params", "created_at", "started_at",
                  "finished_at", "result", "error", "stop_requested", "log_count"):
        assert getattr(after, field) == getattr(session, field), field


def test_percent_is_derived_from_the_merged_progress_not_just_the_report(repo):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, progress={"current": 5})
    assert "percent" not in repo.get(session.id).progress
    repo.report_progress(session.id, progress={"total": 8})
    assert repo.get(session.id).progress == {"current": 5, "total": 8, "percent": 62.5}


def test_a_later_report_without_percent_derives_it_again(repo):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, progress={"current": 1, "total": 4, "percent": 90})
    repo.report_progress(session.id, progress={"current": 3})
    assert repo.get(session.id).progress["percent"] == 75.0


def test_an_empty_report_is_a_heartbeat_that_changes_no_data(repo, clock):
    session = in_state(repo, State.RUNNING, meta={"engine": "numpy"})
    repo.report_progress(session.id, progress={"current": 1, "total": 2})
    before = repo.get(session.id)
    clock.advance(seconds=10)
    repo.report_progress(session.id)
    after = repo.get(session.id)
    assert (after.progress, after.meta, after.usage) == (before.progress, before.meta, before.usage)
    assert after.heartbeat_at > before.heartbeat_at


def test_a_token_delta_no_store_can_hold_is_refused(repo):
    session = in_state(repo, State.RUNNING)
    repo.report_progress(session.id, usage={"tokens": 2**53})
    with pytest.raises(ValidationError) as caught:
        repo.report_progress(session.id, usage={"tokens": 2**63})
    assert caught.value.field == "usage.tokens"
    assert repo.get(session.id).usage["tokens"] == 2**53


def test_finish_from_pending_records_that_nothing_ran(repo):
    failed = repo.finish(in_state(repo, State.PENDING).id, State.FAILED, error="no worker")
    assert failed.state is State.FAILED and failed.error == "no worker"
    assert failed.started_at is None and failed.finished_at is not None


def test_finish_keeps_a_nested_result_exactly(repo):
    result = {"mean": 0.1, "percentiles": {"p50": 1, "p99": [2.5, None]}, "ok": True, "note": "é"}
    session = in_state(repo, State.RUNNING)
    repo.finish(session.id, State.COMPLETED, result=result)
    assert repo.get(session.id).result == result


@pytest.mark.parametrize("arguments, field", [
    ({"result": [1, 2]}, "result"), ({"result": "done"}, "result"),
    ({"result": {"x": float("nan")}}, "result"), ({"error": 42}, "error"), ({"error": "a\x00b"}, "error"),
])
def test_finish_refuses_a_bad_result_or_error_and_changes_nothing(repo, arguments, field):
    session = in_state(repo, State.RUNNING)
    before = repo.get(session.id)
    with pytest.raises(ValidationError) as caught:
        repo.finish(session.id, State.FAILED, **arguments)
    assert caught.value.field == field
    assert repo.get(session.id) == before


def test_asking_a_running_session_to_stop_twice_keeps_it_running(repo):
    session = in_state(repo, State.RUNNING)
    repo.request_stop(session.id)
    again = repo.request_stop(session.id)
    assert again.state is State.RUNNING and again.stop_requested
    assert repo.snapshot().counts["running"] == 1


def test_integers_beyond_64_bits_round_trip_exactly_everywhere(repo):
    big = {"n": 2**70, "neg": -(2**65), "text": "12345678901234567890123", "f": 0.1}
    session = in_state(repo, State.RUNNING, params=big, meta={"m": 2**80})
    repo.report_progress(session.id, progress=big, meta={"k": 2**66})
    repo.finish(session.id, State.COMPLETED, result=big)
    stored = repo.get(session.id)
    assert stored.params == big and stored.progress == big and stored.result == big
    assert stored.meta == {"m": 2**80, "k": 2**66}
    assert [s.progress for s in repo.snapshot().sessions["completed"]] == [big]
