"""The SQL stores' progress fast paths.  On SQLite a report that decides ``percent`` alone
is merged by the database in one UPDATE (json_patch); any other report (every progress-only
report on PostgreSQL) reads, merges and writes without a transaction, guarded by a
compare-and-swap on the stored progress.  A write from another
process landing between its read and its write must make it retry, never be overwritten."""
from __future__ import annotations

import pytest

from repositories.errors import InvalidTransition, SessionNotFound
from repositories.sql import SqlSessionRepository, store as store_module


@pytest.fixture(params=["sqlite", "postgresql"])
def two_processes(request, tmp_path):
    """Two stores on one database, each with its own engine, as two processes would have."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'swap.db'}"
        SqlSessionRepository.from_url(url).create_schema()
    else:
        url = request.getfixturevalue("empty_postgres")()
    first = SqlSessionRepository.from_url(url)
    second = SqlSessionRepository.from_url(url)
    yield first, second
    first.close()
    second.close()


def test_a_write_between_read_and_swap_is_kept_and_the_report_retried(two_processes, monkeypatch):
    first, second = two_processes
    session = first.create(kind="k", owner="o")
    first.start(session.id)
    first.report_progress(session.id, progress={"a": 0})
    merges = []
    real_merge = store_module.merge_progress

    def merge_with_a_rival_write(stored, patch):
        merges.append(dict(stored))
        if len(merges) == 1:             # the other process reports while we hold our read
            second.report_progress(session.id, progress={"b": 1})
        return real_merge(stored, patch)

    monkeypatch.setattr(store_module, "merge_progress", merge_with_a_rival_write)
    first.report_progress(session.id, progress={"a": 2})
    assert merges[0] == {"a": 0} and merges[-1] == {"a": 0, "b": 1}
    assert first.get(session.id).progress == {"a": 2, "b": 1}


def test_a_session_finished_between_read_and_swap_refuses_the_report(two_processes, monkeypatch):
    first, second = two_processes
    session = first.create(kind="k", owner="o")
    first.start(session.id)
    real_merge = store_module.merge_progress

    def merge_while_it_finishes(stored, patch):
        second.finish(session.id, "completed")
        return real_merge(stored, patch)

    monkeypatch.setattr(store_module, "merge_progress", merge_while_it_finishes)
    with pytest.raises(InvalidTransition):
        first.report_progress(session.id, progress={"late": True})
    stored = first.get(session.id)
    assert stored.state.value == "completed" and stored.progress == {}


@pytest.mark.parametrize("two_processes", ["sqlite"], indirect=True)   # PostgreSQL's json has no merge
def test_a_report_with_current_and_total_is_one_update_merged_by_the_database(two_processes, monkeypatch):
    first, second = two_processes
    session = first.create(kind="k", owner="o")
    first.start(session.id)
    first.report_progress(session.id, progress={"step": "load", "rows": 7})
    swaps = []
    monkeypatch.setattr(first, "_swap_progress", lambda *a: swaps.append(a))
    first.report_progress(session.id, progress={"current": 1, "total": 4, "rows": None})
    second.report_progress(session.id, progress={"current": 2, "total": 4})  # the other process
    assert swaps == []
    assert first.get(session.id).progress == {"step": "load", "current": 2, "total": 4, "percent": 50.0}


def test_the_one_statement_path_still_names_why_a_report_is_refused(two_processes):
    first, _ = two_processes
    pending = first.create(kind="k", owner="o")
    with pytest.raises(InvalidTransition):
        first.report_progress(pending.id, progress={"current": 1, "total": 2})
    with pytest.raises(SessionNotFound):
        first.report_progress("0" * 8 + "-0000-4000-8000-" + "0" * 12, progress={"current": 1, "total": 2})
    assert first.get(pending.id).progress == {}
