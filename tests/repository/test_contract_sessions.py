"""Contract: create, get, list and snapshot behave the same on every store."""
from __future__ import annotations

import inspect
import uuid

import pytest

from repositories.base import SessionRepository
from repositories.errors import SessionNotFound, ValidationError
from repositories.memory import MemorySessionRepository
from repositories.sql import SqlSessionRepository
from repositories.states import State


@pytest.mark.parametrize("store", [MemorySessionRepository, SqlSessionRepository])
def test_every_store_implements_every_contract_method(store):
    abstract = {name for name, member in inspect.getmembers(SessionRepository)
                if getattr(member, "__isabstractmethod__", False)}
    assert abstract and not (abstract & store.__abstractmethods__)
    for name in abstract:
        assert getattr(store, name) is not getattr(SessionRepository, name)


def test_a_new_session_is_pending_with_everything_it_was_given(repo):
    session = repo.create(kind="monte_carlo", owner="ana@example.com", label="input.csv",
                          params={"iterations": 10}, meta={"engine": "numpy", "original_filename": "input.csv"})
    assert uuid.UUID(session.id).version == 4
    assert session.state is State.PENDING and not session.stop_requested
    assert session.params == {"iterations": 10}
    assert session.meta == {"engine": "numpy", "original_filename": "input.csv"}
    assert session.progress == {} and session.result is None and session.error is None
    assert session.usage == {"tokens": 0, "cost": 0.0} and session.log_count == 0
    assert session.created_at == session.updated_at and session.created_at.tzinfo is not None
    assert session.started_at is session.finished_at is session.heartbeat_at is None
    assert repo.get(session.id) == session


@pytest.mark.parametrize("field, arguments", [
    ("kind", {"kind": "Monte Carlo"}),
    ("kind", {"kind": ""}),
    ("kind", {"kind": "k" * 65}),
    ("label", {"label": "x" * 257}),
    ("owner", {"owner": ""}),
    ("owner", {"owner": "o" * 257}),
    ("params", {"params": [1, 2]}),
    ("meta", {"meta": "engine=x"}),
])
def test_create_refuses_bad_input_naming_the_field_and_stores_nothing(repo, field, arguments):
    values = {"kind": "batch", "owner": "ana@example.com", **arguments}
    with pytest.raises(ValidationError) as caught:
        repo.create(**values)
    assert caught.value.field == field
    assert repo.list_sessions().items == []
    assert sum(repo.snapshot().counts.values()) == 0


def test_a_session_created_with_only_kind_and_owner_gets_empty_defaults(repo):
    session = repo.create(kind="a.b-c_9", owner="ana")
    assert (session.label, session.params, session.meta) == ("", {}, {})
    assert repo.get(session.id) == session


@pytest.mark.parametrize("field, arguments", [
    ("params", {"params": {"x": float("nan")}}),
    ("params", {"params": {1: "int key"}}),
    ("meta", {"meta": {"engine": float("inf")}}),
    ("meta", {"meta": {"set": {1, 2}}}),
])
def test_create_refuses_objects_no_store_can_keep_exactly(repo, field, arguments):
    with pytest.raises(ValidationError) as caught:
        repo.create(kind="batch", owner="ana", **arguments)
    assert caught.value.field == field
    assert repo.list_sessions().items == []


def test_limits_at_the_edge_are_accepted(repo):
    session = repo.create(kind="k" * 64, owner="o" * 256, label="l" * 256)
    assert repo.get(session.id).label == "l" * 256


@pytest.mark.parametrize("bad_id", [str(uuid.uuid4()), "not-a-uuid", "", "1 OR 1=1", None, 42])
def test_get_of_an_unknown_or_malformed_id_is_not_found(repo, bad_id):
    with pytest.raises(SessionNotFound):
        repo.get(bad_id)


def test_records_handed_out_are_copies(repo):
    session = repo.create(kind="batch", owner="ana", params={"a": [1]})
    session.params["a"].append(2)
    session.meta["x"] = 1
    assert repo.get(session.id).params == {"a": [1]} and repo.get(session.id).meta == {}


def test_the_store_keeps_its_own_copy_of_what_it_was_given(repo):
    params, meta = {"grid": [1, 2]}, {"engine": "numpy", "opts": {"fast": True}}
    session = repo.create(kind="batch", owner="ana", params=params, meta=meta)
    params["grid"].append(3)
    meta["opts"]["fast"] = False
    assert repo.get(session.id).params == {"grid": [1, 2]}
    assert repo.get(session.id).meta == {"engine": "numpy", "opts": {"fast": True}}


def test_lists_and_snapshots_hand_out_copies_too(repo):
    session = repo.create(kind="batch", owner="ana", params={"a": [1]}, meta={"m": {"n": 1}})
    listed = repo.list_sessions().items[0]
    listed.params["a"].append(2)
    listed.meta["m"]["n"] = 2
    snapped = repo.snapshot().sessions["pending"][0]
    snapped.params["a"].append(3)
    snapped.progress["x"] = 1
    stored = repo.get(session.id)
    assert (stored.params, stored.meta, stored.progress) == ({"a": [1]}, {"m": {"n": 1}}, {})


def _ids(page):
    return [s.id for s in page.items]


def test_list_is_newest_first_and_filters_by_state_owner_kind_and_label(repo):
    a = repo.create(kind="batch", owner="ana", label="Quarterly REPORT.csv")
    b = repo.create(kind="monte_carlo", owner="bob", label="sim 100%_done")
    c = repo.create(kind="batch", owner="bob", label="report-2")
    repo.start(c.id)
    assert _ids(repo.list_sessions()) == [c.id, b.id, a.id]
    assert _ids(repo.list_sessions(state=State.RUNNING)) == [c.id]
    assert _ids(repo.list_sessions(state="pending")) == [b.id, a.id]
    assert _ids(repo.list_sessions(owner="bob")) == [c.id, b.id]
    assert _ids(repo.list_sessions(kind="batch")) == [c.id, a.id]
    assert _ids(repo.list_sessions(q="report")) == [c.id, a.id]
    assert _ids(repo.list_sessions(q="100%_")) == [b.id]       # wildcards are literal
    assert _ids(repo.list_sessions(q="%")) == [b.id]
    assert _ids(repo.list_sessions(owner="bob", kind="batch", q="REP")) == [c.id]
    assert _ids(repo.list_sessions(owner="nobody")) == []


def test_keyset_pages_cover_every_session_once_even_with_inserts_between_pages(repo):
    created = [repo.create(kind="batch", owner="ana", label=str(i)).id for i in range(23)]
    seen, cursor = [], None
    while True:
        page = repo.list_sessions(limit=5, cursor=cursor)
        seen += _ids(page)
        repo.create(kind="batch", owner="ana", label="arrived while paging")
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(created))


def test_filtered_pages_cover_every_matching_session_once(repo):
    wanted = []
    for i in range(17):
        session = repo.create(kind="batch", owner="ana" if i % 3 else "bob", label=f"Run {i}")
        if i % 3:
            wanted.append(session.id)
    seen, cursor = [], None
    while True:
        page = repo.list_sessions(owner="ana", q="RUN", limit=4, cursor=cursor)
        assert len(page.items) <= 4
        seen += _ids(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(wanted))


@pytest.mark.parametrize("limit", [1, 200])
def test_list_limits_at_the_edge_are_accepted(repo, limit):
    for _ in range(3):
        repo.create(kind="batch", owner="ana")
    assert len(repo.list_sessions(limit=limit).items) == min(limit, 3)


def test_the_last_page_has_no_cursor(repo):
    for _ in range(3):
        repo.create(kind="batch", owner="ana")
    assert repo.list_sessions(limit=3).next_cursor is None
    assert repo.list_sessions(limit=2).next_cursor is not None


@pytest.mark.parametrize("limit", [0, 201, -1, "10", True])
def test_list_limit_out_of_range_is_refused(repo, limit):
    with pytest.raises(ValidationError) as caught:
        repo.list_sessions(limit=limit)
    assert caught.value.field == "limit"


@pytest.mark.parametrize("cursor", ["garbage", "AAAA", "k1:-5", "=="])
def test_a_malformed_cursor_is_refused_naming_cursor(repo, cursor):
    with pytest.raises(ValidationError) as caught:
        repo.list_sessions(cursor=cursor)
    assert caught.value.field == "cursor"


def test_an_unknown_state_filter_is_refused(repo):
    with pytest.raises(ValidationError) as caught:
        repo.list_sessions(state="done")
    assert caught.value.field == "state"


def test_snapshot_counts_every_state_and_lists_the_newest_of_each(repo):
    pending = [repo.create(kind="batch", owner="ana").id for _ in range(4)]
    running = repo.create(kind="batch", owner="ana").id
    repo.start(running)
    done = repo.create(kind="batch", owner="ana").id
    repo.start(done)
    repo.finish(done, State.COMPLETED, result={"ok": True})
    snapshot = repo.snapshot(limit_per_state=3)
    assert snapshot.counts == {"pending": 4, "running": 1, "completed": 1, "failed": 0, "stopped": 0}
    assert [s.id for s in snapshot.sessions["pending"]] == list(reversed(pending))[:3]
    assert [s.id for s in snapshot.sessions["running"]] == [running]
    assert [s.id for s in snapshot.sessions["completed"]] == [done]
    assert snapshot.sessions["failed"] == [] and snapshot.sessions["stopped"] == []
    assert snapshot.taken_at.tzinfo is not None


def test_a_snapshot_shows_every_session_once_in_its_stored_state(repo):
    ids = {}
    for i in range(25):
        session = repo.create(kind="batch", owner="ana")
        if i % 5 == 1:
            repo.start(session.id)
        elif i % 5 == 2:
            repo.start(session.id)
            repo.finish(session.id, State.COMPLETED)
        elif i % 5 == 3:
            repo.finish(session.id, State.FAILED, error="could not start")
        elif i % 5 == 4:
            repo.request_stop(session.id)
        ids[session.id] = repo.get(session.id).state.value
    snapshot = repo.snapshot(limit_per_state=1000)
    shown = {s.id: state for state, bucket in snapshot.sessions.items() for s in bucket}
    assert sum(len(bucket) for bucket in snapshot.sessions.values()) == len(shown) == 25
    assert shown == ids
    assert snapshot.counts == {state: 5 for state in snapshot.counts}


def test_label_search_is_case_insensitive_beyond_ascii(repo):
    match = repo.create(kind="batch", owner="ana", label="RÉSUMÉ Über Жук.pdf")
    repo.create(kind="batch", owner="ana", label="resume uber zhuk.pdf")
    for q in ("résumé", "über", "жук", "RÉSUMÉ", "ÜBER"):
        assert _ids(repo.list_sessions(q=q)) == [match.id], q


def test_label_search_treats_backslashes_literally(repo):
    a = repo.create(kind="batch", owner="ana", label=r"C:\data\run_1.csv")
    repo.create(kind="batch", owner="ana", label="C:/data/run1.csv")
    assert _ids(repo.list_sessions(q=r"\run_1")) == [a.id]


def test_a_listing_by_several_states_skips_the_others_and_pages_newest_first(repo):
    finished = []
    for n in range(7):
        session = repo.start(repo.create(kind="k", owner="o").id)
        if n % 2 == 0:
            finished.append(repo.finish(session.id, "completed" if n % 4 == 0 else "failed").id)
        repo.create(kind="k", owner="o")                     # a pending one between them
    page = repo.list_sessions(states=[State.COMPLETED, "failed", State.STOPPED], limit=3)
    assert [s.id for s in page.items] == finished[::-1][:3] and page.next_cursor
    rest = repo.list_sessions(states=["completed", "failed", "stopped"], limit=3, cursor=page.next_cursor)
    assert [s.id for s in rest.items] == finished[::-1][3:] and rest.next_cursor is None
    assert [s.id for s in repo.list_sessions(state="failed", states=["completed", "failed"]).items] == \
        [s for s in finished[::-1] if repo.get(s).state is State.FAILED]
    assert repo.list_sessions(state="running", states=["completed"]).items == []
