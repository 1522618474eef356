"""Contract: logs get gapless seq, server timestamps that never change, and hard caps."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from repositories.errors import InvalidTransition, LogLimitExceeded, SessionNotFound, ValidationError
from repositories.records import LogInput
from repositories.states import State


def running(repo):
    session = repo.create(kind="batch", owner="ana")
    return repo.start(session.id)


def entries(n, level="info", prefix="line"):
    return [{"level": level, "message": f"{prefix} {i}", "fields": {"i": i}} for i in range(n)]


def test_seq_starts_at_one_and_continues_across_batches(repo):
    session = running(repo)
    assert repo.append_logs(session.id, entries(3)).first_seq == 1
    assert repo.append_logs(session.id, entries(2)).last_seq == 5
    page = repo.read_logs(session.id)
    assert [e.seq for e in page.entries] == [1, 2, 3, 4, 5]
    assert page.entries[3].message == "line 0" and page.entries[3].fields == {"i": 0}
    assert repo.get(session.id).log_count == 5


def test_log_inputs_may_be_records_or_dicts(repo):
    session = running(repo)
    repo.append_logs(session.id, [LogInput("warning", "disk low"), {"level": "error", "message": "x"}])
    assert [(e.level, e.fields) for e in repo.read_logs(session.id).entries] == [("warning", {}), ("error", {})]


def test_timestamps_are_set_by_the_server_and_never_change(repo, clock):
    session = running(repo)
    repo.append_logs(session.id, entries(2))
    first = repo.read_logs(session.id).entries
    clock.advance(hours=1)
    assert repo.read_logs(session.id).entries == first
    assert first[0].ts.tzinfo is not None and first[0].ts < clock.now


def test_appending_refreshes_the_heartbeat(repo, clock):
    session = running(repo)
    clock.advance(seconds=30)
    repo.append_logs(session.id, entries(1))
    assert repo.get(session.id).heartbeat_at > session.heartbeat_at


def test_pending_sessions_accept_logs_but_terminal_ones_do_not(repo):
    pending = repo.create(kind="batch", owner="ana")
    assert repo.append_logs(pending.id, entries(1)).last_seq == 1
    done = running(repo)
    repo.finish(done.id, State.COMPLETED)
    with pytest.raises(InvalidTransition):
        repo.append_logs(done.id, entries(1))


def test_a_message_of_exactly_8_kib_is_stored_and_one_byte_more_is_refused(repo):
    session = running(repo)
    repo.append_logs(session.id, [{"level": "info", "message": "x" * 8192}])
    with pytest.raises(ValidationError) as caught:
        repo.append_logs(session.id, [{"level": "info", "message": "ok"}, {"level": "info", "message": "x" * 8193}])
    assert caught.value.field == "entries[1].message"
    assert repo.get(session.id).log_count == 1


def test_the_message_cap_counts_utf8_bytes_not_characters(repo):
    session = running(repo)
    repo.append_logs(session.id, [{"level": "info", "message": "é" * 4096}])      # 8192 bytes
    with pytest.raises(ValidationError):
        repo.append_logs(session.id, [{"level": "info", "message": "€" * 2731}])  # 8193 bytes


@pytest.mark.parametrize("batch, field", [
    ([], "entries"),
    ([{"level": "fatal", "message": "m"}], "entries[0].level"),
    ([{"level": "info", "message": 5}], "entries[0].message"),
    ([{"level": "info", "message": "m", "fields": [1]}], "entries[0].fields"),
    ([{"level": "info"}], "entries[0].message"),
    ([{"message": "m"}], "entries[0].level"),
    ([{"level": "info", "message": "m", "lvl": 1}], "entries[0].lvl"),
    (["just text"], "entries[0]"),
])
def test_bad_entries_refuse_the_whole_batch(repo, batch, field):
    session = running(repo)
    with pytest.raises(ValidationError) as caught:
        repo.append_logs(session.id, batch)
    assert caught.value.field == field
    assert repo.get(session.id).log_count == 0


def test_a_batch_that_would_cross_the_cap_is_refused_whole_and_nothing_is_lost(make_repo):
    repo = make_repo(max_log_entries=10)
    session = running(repo)
    repo.append_logs(session.id, entries(8))
    with pytest.raises(LogLimitExceeded) as caught:
        repo.append_logs(session.id, entries(3, prefix="extra"))
    assert "10" in caught.value.message and "nothing was stored" in caught.value.message
    stored = repo.read_logs(session.id).entries
    assert [e.message for e in stored] == [f"line {i}" for i in range(8)]
    assert repo.append_logs(session.id, entries(2)).last_seq == 10      # exactly at the cap is fine
    with pytest.raises(LogLimitExceeded):
        repo.append_logs(session.id, entries(1))


def test_read_logs_pages_with_after_and_limit(repo):
    session = running(repo)
    repo.append_logs(session.id, entries(10))
    page = repo.read_logs(session.id, after=3, limit=4)
    assert [e.seq for e in page.entries] == [4, 5, 6, 7] and page.next_after == 7
    end = repo.read_logs(session.id, after=10)
    assert end.entries == [] and end.next_after == 10


@pytest.mark.parametrize("arguments, field", [
    ({"after": -1}, "after"), ({"limit": 0}, "limit"), ({"limit": 5001}, "limit"), ({"after": "3"}, "after"),
])
def test_read_logs_refuses_out_of_range_paging(repo, arguments, field):
    session = running(repo)
    with pytest.raises(ValidationError) as caught:
        repo.read_logs(session.id, **arguments)
    assert caught.value.field == field


def test_logs_of_an_unknown_session_are_not_found(repo):
    with pytest.raises(SessionNotFound):
        repo.read_logs("6f1c2f9e-8a55-4c39-9a1e-2b7d0f9c1a11")
    with pytest.raises(SessionNotFound):
        repo.append_logs("6f1c2f9e-8a55-4c39-9a1e-2b7d0f9c1a11", entries(1))


def test_iter_logs_streams_every_entry_in_order_in_batches(repo):
    session = running(repo)
    for _ in range(5):
        repo.append_logs(session.id, entries(100))
    streamed = list(repo.iter_logs(session.id, batch_size=64))
    assert [e.seq for e in streamed] == list(range(1, 501))


@pytest.mark.parametrize("message", ["nul \x00 inside", "lone \ud800 surrogate"])
def test_messages_no_database_can_store_are_refused(repo, message):
    session = running(repo)
    with pytest.raises(ValidationError) as caught:
        repo.append_logs(session.id, [{"level": "info", "message": message}])
    assert caught.value.field == "entries[0].message"


def test_each_entry_is_stamped_when_stored_in_utc(repo, clock):
    session = running(repo)
    repo.append_logs(session.id, entries(2))
    middle = clock.now
    clock.advance(minutes=1)
    repo.append_logs(session.id, entries(2))
    stamps = [e.ts for e in repo.read_logs(session.id).entries]
    assert all(ts.utcoffset() == timedelta(0) for ts in stamps)
    assert stamps[0] == stamps[1] <= middle < stamps[2] == stamps[3] <= clock.now


def test_a_four_byte_character_message_at_exactly_8_kib_is_kept_whole(repo):
    session = running(repo)
    repo.append_logs(session.id, [{"level": "debug", "message": "😀" * 2048}])    # 8192 bytes
    assert repo.read_logs(session.id).entries[0].message == "😀" * 2048
    with pytest.raises(ValidationError):
        repo.append_logs(session.id, [{"level": "debug", "message": "😀" * 2048 + "x"}])


def test_fields_and_messages_round_trip_exactly(repo):
    session = running(repo)
    fields = {"rows": 10, "ratio": 0.1, "tags": ["a", None, True], "nested": {"ü": "ß"}}
    repo.append_logs(session.id, [{"level": "warning", "message": "  spaced\tand\nnew line ", "fields": fields}])
    entry = repo.read_logs(session.id).entries[0]
    assert (entry.level, entry.message, entry.fields) == ("warning", "  spaced\tand\nnew line ", fields)


def test_odd_text_and_numbers_in_a_batch_round_trip_exactly(repo):
    """PostgreSQL unpacks a batch from one JSON document on the server: escapes, control
    characters and numbers no 64-bit type holds must come back as they were sent."""
    session = running(repo)
    odd = ['"quoted" \\ back\\slash', "\u2028 line sep \x7f \x01 bell", "é 漢字 🎉", "{not json}", ""]
    fields = {"big": 2**70 + 1, "float": 4.59e16, "tiny": 5e-324, "neg": -0.5, "s": "\u00e9\\n"}
    repo.append_logs(session.id, [{"level": "info", "message": m, "fields": fields} for m in odd])
    entries = repo.read_logs(session.id).entries
    assert [e.message for e in entries] == odd and [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert all(e.fields == fields for e in entries)
    assert type(entries[0].fields["big"]) is int and type(entries[0].fields["float"]) is float


def test_a_refused_batch_leaves_the_session_untouched(make_repo, clock):
    repo = make_repo(max_log_entries=5)
    session = running(repo)
    repo.append_logs(session.id, entries(2))
    before = repo.get(session.id)
    clock.advance(seconds=30)
    with pytest.raises(LogLimitExceeded):
        repo.append_logs(session.id, entries(4))
    with pytest.raises(ValidationError):
        repo.append_logs(session.id, entries(1) + [{"level": "loud", "message": "m"}])
    assert repo.get(session.id) == before
    assert [e.seq for e in repo.read_logs(session.id).entries] == [1, 2]


def test_a_batch_bigger_than_the_whole_cap_is_refused_on_an_empty_session(make_repo):
    repo = make_repo(max_log_entries=3)
    session = running(repo)
    with pytest.raises(LogLimitExceeded):
        repo.append_logs(session.id, entries(4))
    assert repo.get(session.id).log_count == 0 and repo.read_logs(session.id).entries == []


@pytest.mark.parametrize("limit", [1, 5000])
def test_read_logs_limits_at_the_edge_are_accepted(repo, limit):
    session = running(repo)
    repo.append_logs(session.id, entries(3))
    assert len(repo.read_logs(session.id, limit=limit).entries) == min(limit, 3)


def test_reading_past_the_end_or_an_empty_log_returns_nothing(repo):
    session = running(repo)
    assert repo.read_logs(session.id).entries == [] and repo.read_logs(session.id).next_after == 0
    assert repo.read_logs(session.id, after=99).next_after == 99
    assert list(repo.iter_logs(session.id)) == []


def test_iter_logs_of_an_unknown_session_raises_before_the_first_entry(repo):
    stream = repo.iter_logs("6f1c2f9e-8a55-4c39-9a1e-2b7d0f9c1a11")
    with pytest.raises(SessionNotFound):
        next(stream)


def test_iter_logs_ends_cleanly_when_cleanup_removes_the_session_mid_stream(repo, clock):
    session = running(repo)
    repo.append_logs(session.id, entries(10))
    repo.finish(session.id, State.COMPLETED)
    clock.advance(days=30)
    stream = repo.iter_logs(session.id, batch_size=4)
    head = [next(stream) for _ in range(4)]
    assert repo.cleanup(timedelta(days=7)).sessions == 1
    assert [e.seq for e in head + list(stream)] == [1, 2, 3, 4]


def test_one_large_batch_keeps_its_order_and_numbers(repo):
    session = running(repo)
    repo.append_logs(session.id, entries(3))
    assert repo.append_logs(session.id, entries(1201, prefix="big")).last_seq == 1204
    stored = list(repo.iter_logs(session.id, batch_size=500))
    assert [e.seq for e in stored] == list(range(1, 1205))
    assert [e.message for e in stored[3:]] == [f"big {i}" for i in range(1201)]


def test_the_reporters_at_round_trips_to_the_microsecond_and_is_none_when_absent(repo):
    session = running(repo)
    at = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
    east = datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=timezone(timedelta(hours=2)))
    repo.append_logs(session.id, [LogInput("info", "record", at=at), {"level": "info", "message": "dict", "at": east},
                                  {"level": "info", "message": "none", "at": None}, {"level": "info", "message": "absent"}])
    stored = repo.read_logs(session.id).entries
    assert [e.at for e in stored] == [at, east, None, None]
    assert stored[1].at.tzinfo is timezone.utc and stored[1].at.hour == 10     # kept in UTC
    assert [e.shown_at for e in stored] == [at, east, stored[2].ts, stored[3].ts]
    assert list(repo.iter_logs(session.id)) == stored


def test_the_earliest_at_is_the_first_instant_of_2000_utc(repo):
    session = running(repo)
    earliest = datetime(2000, 1, 1, tzinfo=timezone.utc)
    repo.append_logs(session.id, [LogInput("info", "m", at=earliest)])
    assert repo.read_logs(session.id).entries[0].at == earliest


@pytest.mark.parametrize("at", [
    datetime(2026, 3, 1, 10, 0),                                               # naive
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    datetime(2000, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),           # 1999 in UTC
    datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),      # past 9999 in UTC
    "2026-03-01T10:00:00Z",                                                    # text: the API parses it
])
def test_a_bad_at_refuses_the_whole_batch_naming_the_entry(repo, at):
    session = running(repo)
    with pytest.raises(ValidationError) as caught:
        repo.append_logs(session.id, [{"level": "info", "message": "fine"}, {"level": "info", "message": "m", "at": at}])
    assert caught.value.field == "entries[1].at"
    assert repo.get(session.id).log_count == 0 and repo.read_logs(session.id).entries == []
