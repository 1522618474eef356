"""SPEC §2 under contention: threads (and, for SQL, processes) released together on a
barrier, with invariants checked afterwards — never timings."""
from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from datetime import timedelta

import pytest

import process_workers
from race_support import run_together
from repositories.errors import InvalidTransition, SessionNotFound
from repositories.records import utcnow
from repositories.states import State

THREADS = 8




def assert_snapshot_shows_each_session_once(snapshot, must_contain):
    seen = Counter(s.id for bucket in snapshot.sessions.values() for s in bucket)
    assert all(n == 1 for n in seen.values()), "a session appeared twice"
    assert must_contain <= set(seen), "a session that existed is missing"
    for state, bucket in snapshot.sessions.items():
        assert snapshot.counts[state] == len(bucket)
        assert all(s.state.value == state for s in bucket)


def test_snapshots_show_every_session_exactly_once_while_writers_move_them(make_repo):
    repo = make_repo(clock=utcnow)
    existing = set()            # sessions whose create has returned
    attempted = [0]             # creates begun; a snapshot can never show more
    lock = threading.Lock()
    stop = threading.Event()

    def writer(seed):
        rng = random.Random(seed)
        for _ in range(12):
            with lock:
                attempted[0] += 1
            session = repo.create(kind="batch", owner=f"w{seed}")
            with lock:
                existing.add(session.id)
            repo.start(session.id)
            repo.report_progress(session.id, progress={"current": 1, "total": 3})
            if rng.random() < 0.3:
                repo.request_stop(session.id)
            repo.finish(session.id, rng.choice([State.COMPLETED, State.FAILED, State.STOPPED]))

    def reader():
        snapshots = 0
        while not stop.is_set() or snapshots < 3:
            with lock:
                known = set(existing)
            snapshot = repo.snapshot(limit_per_state=1000)
            with lock:
                most = attempted[0]
            assert_snapshot_shows_each_session_once(snapshot, known)
            assert len(known) <= sum(snapshot.counts.values()) <= most
            snapshots += 1
        return snapshots

    def all_writers():
        try:
            run_together(*[lambda s=s: writer(s) for s in range(THREADS - 2)])
        finally:
            stop.set()

    results = run_together(all_writers, reader, reader)
    assert results[1] >= 3 and results[2] >= 3
    final = repo.snapshot(limit_per_state=1000)
    assert_snapshot_shows_each_session_once(final, existing)
    assert sum(final.counts.values()) == len(existing) == (THREADS - 2) * 12
    assert final.counts["pending"] == final.counts["running"] == 0


def test_concurrent_appends_number_entries_1_to_n_without_gaps(repo):
    session = repo.start(repo.create(kind="batch", owner="ana").id)
    batches, size = 15, 7

    def appender():
        return [repo.append_logs(session.id, [{"level": "info", "message": "x"}] * size) for _ in range(batches)]

    ranges = [r for result in run_together(*[appender] * THREADS) for r in result]
    total = THREADS * batches * size
    assert sorted(seq for r in ranges for seq in range(r.first_seq, r.last_seq + 1)) == list(range(1, total + 1))
    assert [e.seq for e in repo.iter_logs(session.id)] == list(range(1, total + 1))
    assert repo.get(session.id).log_count == total


def test_readers_see_a_whole_session_or_none_while_cleanup_runs(make_repo, clock):
    repo = make_repo()
    ids = []
    for i in range(60):
        session = repo.start(repo.create(kind="batch", owner="ana").id)
        repo.append_logs(session.id, [{"level": "info", "message": f"{i}-{n}"} for n in range(1 + i % 5)])
        repo.finish(session.id, State.COMPLETED)
        ids.append(session.id)
    clock.advance(days=10)
    cleaned = threading.Event()

    def cleaner():
        try:
            return repo.cleanup(timedelta(days=7))
        finally:
            cleaned.set()

    def reader(seed):
        rng = random.Random(seed)
        outcomes = Counter()
        while not cleaned.is_set() or sum(outcomes.values()) < 20:
            session_id = rng.choice(ids)
            try:
                session = repo.get(session_id)
                entries = repo.read_logs(session_id, limit=5000).entries
            except SessionNotFound:
                outcomes["gone"] += 1
                continue
            assert [e.seq for e in entries] == list(range(1, session.log_count + 1)), \
                "a half-removed session was visible"
            outcomes["whole"] += 1
        return outcomes

    results = run_together(cleaner, *[lambda s=s: reader(s) for s in range(THREADS - 1)])
    assert (results[0].sessions, results[0].log_entries) == (60, sum(1 + i % 5 for i in range(60)))
    for session_id in ids:
        with pytest.raises(SessionNotFound):
            repo.get(session_id)
    assert sum(repo.snapshot().counts.values()) == 0


def test_cleanup_beside_writers_removes_only_the_expired_and_fails_no_write(make_repo, clock):
    """Retention runs while workers report, log, start and finish other sessions: every
    write succeeds, live and new sessions stay whole, and the usage rollups are untouched."""
    repo = make_repo()
    for i in range(80):
        session = repo.start(repo.create(kind="batch", owner="ana").id)
        repo.append_logs(session.id, [{"level": "info", "message": str(n)} for n in range(3)])
        repo.finish(session.id, State.COMPLETED)
    clock.advance(days=10)
    live = [repo.start(repo.create(kind="batch", owner="bo").id).id for _ in range(THREADS - 1)]
    usage_before = repo.usage(by="owner")

    def cleaner():
        return repo.cleanup(timedelta(days=7))

    def writer(session_id):
        written = 0
        for n in range(40):
            repo.report_progress(session_id, progress={"current": n, "total": 40}, usage={"tokens": 1})
            repo.append_logs(session_id, [{"level": "info", "message": f"step {n}"}])
            fresh = repo.start(repo.create(kind="batch", owner="bo").id)
            repo.finish(fresh.id, State.COMPLETED)
            written += 1
        return written

    results = run_together(cleaner, *[lambda s=s: writer(s) for s in live])
    assert results[0].sessions == 80 and results[1:] == [40] * len(live)
    for session_id in live:
        session = repo.get(session_id)
        assert session.state is State.RUNNING and session.progress["current"] == 39 and session.log_count == 40
    counts = repo.snapshot().counts
    assert counts["running"] == len(live) and counts["completed"] == 40 * len(live)
    tokens = {row.key: row.tokens for row in repo.usage(by="owner")}
    assert tokens["bo"] == 40 * len(live)
    assert {r.key: r.sessions for r in usage_before}["ana"] == {r.key: r.sessions for r in repo.usage(by="owner")}["ana"]


def test_concurrent_finishes_with_different_states_have_exactly_one_winner(repo):
    targets = [State.COMPLETED, State.FAILED, State.STOPPED] * 3
    for _ in range(8):
        session = repo.start(repo.create(kind="batch", owner="ana").id)

        def finisher(target):
            try:
                return target, repo.finish(session.id, target).state
            except InvalidTransition:
                return target, None

        results = run_together(*[lambda t=t: finisher(t) for t in targets])
        final = repo.get(session.id).state
        winners = {target for target, state in results if state is not None}
        assert winners == {final}
        assert all(state is None for target, state in results if target is not final)
    counts = repo.snapshot().counts
    assert counts["running"] == 0 and sum(counts.values()) == 8


def test_concurrent_reports_lose_no_key_and_no_usage(repo):
    session = repo.start(repo.create(kind="batch", owner="ana", meta={"engine": "numpy"}).id)
    reports = 20

    def reporter(index):
        for n in range(reports):
            if n % 2:      # progress only, and progress + meta + usage: both write paths race
                repo.report_progress(session.id, progress={f"t{index}": {"n": n}})
            else:
                repo.report_progress(session.id, progress={f"t{index}": {"n": n}},
                                     meta={f"m{index}": n}, usage={"tokens": 1, "cost": 0.5})

    run_together(*[lambda i=i: reporter(i) for i in range(THREADS)])
    stored = repo.get(session.id)
    assert stored.progress == {f"t{i}": {"n": reports - 1} for i in range(THREADS)}
    assert stored.meta == {"engine": "numpy", **{f"m{i}": reports - 2 for i in range(THREADS)}}
    assert stored.usage == {"tokens": THREADS * reports // 2, "cost": 0.5 * (THREADS * reports // 2)}
    [row] = repo.usage(by="engine")
    assert (row.key, row.sessions, row.tokens, row.cost) == ("numpy", 1, stored.usage["tokens"], stored.usage["cost"])


def test_of_several_concurrent_starts_exactly_one_wins(repo):
    for _ in range(5):
        session = repo.create(kind="batch", owner="ana")

        def starter():
            try:
                return repo.start(session.id).state
            except InvalidTransition:
                return None

        results = run_together(*[starter] * THREADS)
        assert results.count(State.RUNNING) == 1 and results.count(None) == THREADS - 1
    assert repo.snapshot().counts["running"] == 5 and repo.snapshot().counts["pending"] == 0


def test_concurrent_sweeps_fail_each_stale_session_exactly_once(repo, clock):
    stale = {repo.start(repo.create(kind="batch", owner="ana").id).id for _ in range(30)}
    clock.advance(minutes=5)
    fresh = repo.start(repo.create(kind="batch", owner="ana").id).id
    results = run_together(*[lambda: repo.sweep_heartbeats(timedelta(seconds=60))] * 4)
    swept = [session_id for result in results for session_id in result]
    assert sorted(swept) == sorted(stale), "a session was swept twice or not at all"
    assert repo.get(fresh).state is State.RUNNING
    assert repo.snapshot().counts == {"pending": 0, "running": 1, "completed": 0, "failed": 30, "stopped": 0}


def test_concurrent_cleanups_remove_each_session_exactly_once(repo, clock):
    logs = 0
    for i in range(30):
        session = repo.start(repo.create(kind="batch", owner="ana").id)
        repo.append_logs(session.id, [{"level": "info", "message": "m"}] * (i % 4 + 1))
        logs += i % 4 + 1
        repo.finish(session.id, State.COMPLETED)
    clock.advance(days=8)
    results = run_together(*[lambda: repo.cleanup(timedelta(days=7))] * 4)
    assert sum(r.sessions for r in results) == 30 and sum(r.log_entries for r in results) == logs
    assert sum(repo.snapshot().counts.values()) == 0


# -- several processes at once (SQL stores only) -------------------------------------------

PROCESSES = 4


@pytest.fixture
def spawn():
    return multiprocessing.get_context("spawn")


def _run_processes(spawn, target, argument_lists):
    processes = [spawn.Process(target=target, args=args) for args in argument_lists]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert all(process.exitcode == 0 for process in processes)


def _drain(queue, expected):
    return [queue.get(timeout=60) for _ in range(expected)]


@pytest.mark.parametrize("sql_url", ["sqlite", "postgresql"], indirect=True)
def test_appends_from_several_processes_number_entries_1_to_n(sql_url, spawn):
    from repositories.sql import SqlSessionRepository

    repo = SqlSessionRepository.from_url(sql_url)
    session = repo.start(repo.create(kind="batch", owner="ana").id)
    barrier, results = spawn.Barrier(PROCESSES), spawn.Queue()
    batches, size = 20, 5
    _run_processes(spawn, process_workers.append_batches,
                   [(sql_url, session.id, barrier, batches, size, results)] * PROCESSES)
    ranges = _drain(results, PROCESSES * batches)
    total = PROCESSES * batches * size
    assert sorted(seq for first, last in ranges for seq in range(first, last + 1)) == list(range(1, total + 1))
    assert [e.seq for e in repo.iter_logs(session.id)] == list(range(1, total + 1))
    repo.close()


@pytest.mark.parametrize("sql_url", ["sqlite", "postgresql"], indirect=True)
def test_finishes_from_several_processes_have_exactly_one_winner(sql_url, spawn):
    from repositories.sql import SqlSessionRepository

    repo = SqlSessionRepository.from_url(sql_url)
    ids = [repo.start(repo.create(kind="batch", owner="ana").id).id for _ in range(10)]
    barrier, results = spawn.Barrier(3), spawn.Queue()
    targets = ["completed", "failed", "stopped"]
    _run_processes(spawn, process_workers.finish_as, [(sql_url, ids, t, barrier, results) for t in targets])
    outcomes = _drain(results, len(ids) * 3)
    for session_id in ids:
        won = [target for sid, target, outcome in outcomes if sid == session_id and outcome == "won"]
        assert len(won) == 1 and repo.get(session_id).state.value == won[0]
    counts = repo.snapshot().counts
    assert counts["running"] == 0 and sum(counts.values()) == len(ids)
    repo.close()


@pytest.mark.parametrize("sql_url", ["sqlite", "postgresql"], indirect=True)
def test_snapshots_stay_exact_while_other_processes_move_sessions(sql_url, spawn):
    from repositories.sql import SqlSessionRepository

    repo = SqlSessionRepository.from_url(sql_url)
    ids = [repo.create(kind="batch", owner="ana").id for _ in range(PROCESSES * 10)]
    barrier, done = spawn.Barrier(PROCESSES + 1), spawn.Event()
    processes = [spawn.Process(target=process_workers.move_through_states,
                               args=(sql_url, ids[i::PROCESSES], barrier, done)) for i in range(PROCESSES)]
    for process in processes:
        process.start()
    barrier.wait(timeout=60)
    snapshots = 0
    while any(p.is_alive() for p in processes) or snapshots < 3:
        assert_snapshot_shows_each_session_once(repo.snapshot(limit_per_state=1000), set(ids))
        snapshots += 1
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    final = repo.snapshot(limit_per_state=1000)
    assert final.counts["pending"] == final.counts["running"] == 0
    assert sum(final.counts.values()) == len(ids)
    repo.close()


@pytest.mark.parametrize("sql_url", ["sqlite", "postgresql"], indirect=True)
def test_a_reader_sees_whole_sessions_while_another_process_cleans_up(sql_url, spawn):
    from repositories.sql import SqlSessionRepository

    past = utcnow() - timedelta(days=30)
    old = SqlSessionRepository.from_url(sql_url, clock=lambda: past)
    ids = []
    for i in range(80):
        session = old.start(old.create(kind="batch", owner="ana").id)
        old.append_logs(session.id, [{"level": "info", "message": str(n)} for n in range(1 + i % 4)])
        ids.append(old.finish(session.id, State.COMPLETED).id)
    old.close()
    repo = SqlSessionRepository.from_url(sql_url)
    barrier, results = spawn.Barrier(2), spawn.Queue()
    cleaner = spawn.Process(target=process_workers.clean_up, args=(sql_url, 7, barrier, results))
    cleaner.start()
    barrier.wait(timeout=60)
    rng, reads = random.Random(7), 0
    while cleaner.is_alive() or reads < 20:
        session_id = rng.choice(ids)
        try:
            session = repo.get(session_id)
            entries = repo.read_logs(session_id, limit=5000).entries
        except SessionNotFound:
            reads += 1
            continue
        assert len(entries) == session.log_count, "a half-removed session was visible"
        reads += 1
    cleaner.join(timeout=60)
    assert cleaner.exitcode == 0
    assert results.get(timeout=30) == (80, sum(1 + i % 4 for i in range(80)))
    assert sum(repo.snapshot().counts.values()) == 0
    repo.close()


@pytest.mark.parametrize("sql_url", ["sqlite", "postgresql"], indirect=True)
def test_reports_from_several_processes_lose_no_key_and_no_usage(sql_url, spawn):
    from repositories.sql import SqlSessionRepository

    repo = SqlSessionRepository.from_url(sql_url)
    session = repo.start(repo.create(kind="batch", owner="ana", meta={"engine": "numpy"}).id)
    barrier, reports = spawn.Barrier(PROCESSES), 20
    _run_processes(spawn, process_workers.report_keys,
                   [(sql_url, session.id, barrier, index, reports) for index in range(PROCESSES)])
    stored = repo.get(session.id)
    assert stored.progress == {f"p{i}": reports - 1 for i in range(PROCESSES)}
    assert stored.meta == {"engine": "numpy", **{f"m{i}": reports - 1 for i in range(PROCESSES)}}
    assert stored.usage["tokens"] == PROCESSES * reports
    assert [(r.key, r.tokens) for r in repo.usage(by="owner")] == [("ana", PROCESSES * reports)]
    repo.close()
