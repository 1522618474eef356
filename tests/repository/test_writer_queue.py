"""SQLite's writers queue on one file lock across processes (``repositories/sql/engine.py``,
``WriterQueue``), not in SQLite's busy handler.

The queue only orders writers; SQLite's own lock still guards the data, which the
multi-process tests in ``test_concurrency.py`` check.  These tests hold the queue's file
lock from outside the store: a write of the store must wait for it, and go on at once
when its holder lets go or dies.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading

import pytest

from repositories.sql import SqlSessionRepository
from repositories.states import State


@pytest.fixture
def store(sqlite_url):
    repo = SqlSessionRepository.from_url(sqlite_url)
    repo.create_schema()
    yield repo
    repo.close()


def _running(store):
    session = store.create(kind="demo", owner="alice")
    store.start(session.id)
    return session


def _report_in_thread(store, session_id):
    done = threading.Event()

    def report():
        store.report_progress(session_id, progress={"current": 1, "total": 2})
        done.set()

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    return thread, done


def _lock_file(sqlite_url):
    return sqlite_url.removeprefix("sqlite:///") + ".writer"


def test_a_write_waits_for_the_holder_of_the_queue_and_goes_on_when_it_lets_go(store, sqlite_url):
    session = _running(store)
    holder = os.open(_lock_file(sqlite_url), os.O_RDONLY)      # the store's first write made it
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)                     # another writer's turn, as the kernel sees it
        thread, done = _report_in_thread(store, session.id)
        # Nothing holds SQLite's own lock, so only the queue can keep the report waiting.
        assert not done.wait(0.5)
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert done.wait(10)
    finally:
        os.close(holder)
    thread.join(10)
    assert store.get(session.id).progress["current"] == 1


def test_a_holder_that_dies_lets_the_queue_go(store, sqlite_url):
    session = _running(store)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         _lock_file(sqlite_url)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        thread, done = _report_in_thread(store, session.id)
        assert not done.wait(0.5)
        holder.send_signal(signal.SIGKILL)                    # dies inside its turn
        assert done.wait(10)
    finally:
        holder.kill()
        holder.communicate(timeout=10)                         # reaped, its pipes closed
    thread.join(10)
    assert store.get(session.id).progress["current"] == 1


def test_reads_do_not_queue_behind_a_writer(store, sqlite_url):
    session = _running(store)
    holder = os.open(_lock_file(sqlite_url), os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert store.get(session.id).state is State.RUNNING
        assert store.snapshot().counts[State.RUNNING] == 1
    finally:
        os.close(holder)
