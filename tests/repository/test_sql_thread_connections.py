"""PostgreSQL reads and progress-only reports run on a connection of the calling thread's
own, outside the pool: it must close when its thread ends and when the store closes, or
every finished thread would keep a server process."""
from __future__ import annotations

import gc
import threading

from repositories.sql import SqlSessionRepository


def _own_connection(repo):
    return repo._transactions._local.relaxed.connection


def test_a_threads_own_connection_closes_with_the_thread_and_the_store(request):
    repo = SqlSessionRepository.from_url(request.getfixturevalue("empty_postgres")())
    session = repo.create(kind="k", owner="o")
    repo.start(session.id)
    seen = []

    def work():
        repo.report_progress(session.id, progress={"step": "a"})
        assert repo.get(session.id).progress == {"step": "a"}
        seen.append(_own_connection(repo))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    gc.collect()
    assert seen and seen[0].closed
    repo.get(session.id)                         # this thread's own connection, then close()
    mine = _own_connection(repo)
    assert not mine.closed
    repo.close()
    assert mine.closed
