"""Functions run in separate processes by the multi-process concurrency tests.

They live in their own module so the "spawn" start method can import them by name.
"""
from __future__ import annotations

import contextlib
from datetime import timedelta

from repositories.errors import InvalidTransition
from repositories.sql import SqlSessionRepository
from repositories.states import State


@contextlib.contextmanager
def released_store(url, barrier):
    """A store of this process, yielded once every process has reached the barrier."""
    repo = SqlSessionRepository.from_url(url)
    try:
        barrier.wait(timeout=60)
        yield repo
    finally:
        repo.close()


def append_batches(url, session_id, barrier, batches, batch_size, results):
    with released_store(url, barrier) as repo:
        for _ in range(batches):
            appended = repo.append_logs(session_id, [{"level": "info", "message": "p"}] * batch_size)
            results.put((appended.first_seq, appended.last_seq))


def finish_as(url, session_ids, target, barrier, results):
    with released_store(url, barrier) as repo:
        for session_id in session_ids:
            try:
                repo.finish(session_id, State(target))
                results.put((session_id, target, "won"))
            except InvalidTransition:
                results.put((session_id, target, "refused"))


def move_through_states(url, session_ids, barrier, done):
    """pending → running → progress → stop → finish, for each session given."""
    try:
        with released_store(url, barrier) as repo:
            for index, session_id in enumerate(session_ids):
                repo.start(session_id)
                repo.report_progress(session_id, progress={"current": 1, "total": 2})
                if index % 2:
                    repo.request_stop(session_id)
                    repo.finish(session_id, State.STOPPED)
                else:
                    repo.finish(session_id, State.COMPLETED if index % 4 == 0 else State.FAILED)
    finally:
        done.set()


def clean_up(url, older_than_days, barrier, results):
    with released_store(url, barrier) as repo:
        removed = repo.cleanup(timedelta(days=older_than_days))
        results.put((removed.sessions, removed.log_entries))


def report_keys(url, session_id, barrier, index, reports):
    """Each process merges its own progress and meta key and one token per report."""
    with released_store(url, barrier) as repo:
        for n in range(reports):
            repo.report_progress(session_id, progress={f"p{index}": n}, meta={f"m{index}": n},
                                 usage={"tokens": 1})
