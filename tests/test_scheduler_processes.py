"""The scheduler across processes: two gunicorn servers on one store, a one-second tick.
Every tick runs in exactly one process (counted in the store and in both servers' logs),
and killing the lease holder lets the other take over."""
from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter

import pytest

from gunicorn_support import Server, wait_for
from repositories.sql import SqlSessionRepository

TICK_LINE = re.compile(r"\] sweep tick (\d+) runs in (\S+)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scheduler.db'}"
    return request.getfixturevalue("empty_postgres_url")


def scheduled_server(url, workdir, name):
    server = Server(url, workdir, name, workers=1)
    server.env.update({"RUNBOARD_SCHEDULER": "on", "RUNBOARD_SWEEP_INTERVAL": "1s",
                       "RUNBOARD_CLEANUP_INTERVAL": "1s"})
    return server


def logged_ticks(*servers) -> Counter:
    return Counter((int(m.group(1)), m.group(2)) for s in servers for m in TICK_LINE.finditer(s.log_text()))


def test_each_tick_runs_once_across_processes_and_a_killed_holder_is_replaced(store_url, tmp_path):
    first = scheduled_server(store_url, tmp_path, "a")
    first.migrate()
    second = scheduled_server(store_url, tmp_path, "b")
    servers = [first.start(), second.start()]
    repository = SqlSessionRepository.from_url(store_url)
    try:
        for server in servers:
            server.wait_ready()
        wait_for(lambda: len(repository.list_ticks("sweep")) >= 5, 20, "five sweep ticks")
        ran = repository.list_ticks("sweep")
        assert len({tick for tick, _ in ran}) == len(ran)
        # The logs count the runs independently of the store's record: each tick once.
        logged = logged_ticks(*servers)
        assert all(n == 1 for n in logged.values()), logged
        assert set(ran) <= set(logged) and len({t for t, _ in logged}) == len(logged)

        holder = ran[0][1]
        holder_pid = int(holder.split(":")[1])
        victim = next(s for s in servers if holder_pid in s.worker_pids())
        survivor = next(s for s in servers if s is not victim)
        os.kill(victim.pid, signal.SIGKILL)          # the master first, so nothing respawns
        os.kill(holder_pid, signal.SIGKILL)
        killed_at, last_tick = time.time(), ran[0][0]
        taken = wait_for(lambda: [t for t in repository.list_ticks("sweep") if t[1] != holder], 20,
                         "another process running the sweep")
        assert taken[-1][0] > last_tick
        wait_for(lambda: len([t for t in repository.list_ticks("sweep") if t[1] != holder]) >= 3, 20,
                 "three ticks by the survivor")
        after = [t for t in repository.list_ticks("sweep") if t[0] > last_tick]
        assert after and all(h != holder for _, h in after)   # the dead holder ran nothing more
        assert time.time() - killed_at < 20
        survived = logged_ticks(survivor)
        assert all(n == 1 for n in survived.values())
        assert {t for t, _ in after} <= {t for t, _ in survived}
        cleanups = repository.list_ticks("cleanup")
        assert cleanups and len({t for t, _ in cleanups}) == len(cleanups)
    finally:
        repository.close()
        for server in servers:
            server.begin_stop()
        for server in servers:
            server.finish_stop()
