"""The client over a network that fails: connections dropped, refused for a while, cut
mid-request, answers thrown away after the server did the work, the server restarted,
and a server gone for good at the end of a run (spool, then ``runboard sync``, twice).
Afterwards every entry is stored exactly once, in order, and usage is exact."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import sys
import threading

import pytest

import runboard
from client_support import sessions_of_kind, stored_logs
from gunicorn_support import wait_for
from proxy_support import FaultProxy


def assert_delivered_once(server, session_id: str, entries: int, tokens: int) -> dict:
    session = server.session(session_id)
    logs = stored_logs(server, session_id)
    assert [e["message"] for e in logs] == [f"line {n}" for n in range(entries)]
    assert [e["seq"] for e in logs] == list(range(1, entries + 1))
    assert session["log_count"] == entries and session["usage"]["tokens"] == tokens
    return session


@contextlib.contextmanager
def chaos(proxy: FaultProxy, every: float = 0.03):
    """Cut every open connection through ``proxy`` every ``every`` seconds, mid-request or
    not, so kept-alive connections cannot dodge the fates of new ones."""
    done = threading.Event()

    def cutting():
        while not done.wait(every):
            proxy.cut()
    thread = threading.Thread(target=cutting, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def job(run, entries: int, *, each=None) -> None:
    for n in range(entries):
        run.log("info", f"line {n}", n=n)
        run.usage(tokens=3, cost=0.5)
        run.progress(current=n + 1, total=entries, stage={"n": n})
        if each is not None:
            each(n)
    run.result = {"done": entries}


def scripted_then_random(seed: int):
    """Fates for the proxy's connections: a drop and a discard among the first ones, since a
    fast machine batches a whole job into a dozen connections and random fates alone may
    miss a fault; random ones after."""
    scripted, fates = ["drop", "pass", "discard", "pass"], random.Random(seed)
    return lambda: scripted.pop(0) if scripted else fates.choices(["pass", "drop", "discard"], [6, 2, 2])[0]


def test_drops_discarded_answers_and_cuts_deliver_everything_exactly_once(server, token):
    proxy = FaultProxy(server.port, scripted_then_random(7))
    client = runboard.Client(proxy.url, token, timeout=2.0, flush_timeout=120, flush_interval=0.05)
    try:
        with chaos(proxy):
            with client.track("chaos.exactly_once", params={"n": 1000}) as run:
                job(run, 1000, each=lambda n: n % 100 == 99 and (run.flush(timeout=60), proxy.cut()))
        assert run.spool_path is None
    finally:
        client.close()
        proxy.close()
    assert proxy.counts["drop"] > 0 and proxy.counts["discard"] > 0, proxy.counts
    [only] = sessions_of_kind(server, "chaos.exactly_once")   # the creation replayed, never repeated
    session = assert_delivered_once(server, only["id"], 1000, 3000)
    assert session["state"] == "completed" and session["result"] == {"done": 1000}
    assert session["usage"]["cost"] == 500.0
    assert session["progress"] == {"current": 1000, "total": 1000, "percent": 100.0, "stage": {"n": 999}}


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_server_refusing_connections_for_a_while_delays_reports_and_loses_none(server, token, caplog):
    caplog.set_level(logging.WARNING, logger="runboard")
    proxy = FaultProxy(server.port)
    client = runboard.Client(proxy.url, token, timeout=2.0, flush_timeout=60, flush_interval=0.05)
    refused_at = 500

    def outage(n):
        if n == refused_at:
            proxy.refuse()
        elif n == refused_at + 500:
            wait_for(lambda: any("unreachable" in r.getMessage() for r in caplog.records), 30,
                     "the client noticing the outage")
            proxy.accept()
    try:
        with client.track("chaos.refused") as run:
            job(run, 2000, each=outage)
    finally:
        client.close()
        proxy.close()
    session = assert_delivered_once(server, run.id, 2000, 6000)
    assert session["state"] == "completed"


def test_a_server_restarted_mid_run_delays_reports_and_loses_none(server, token):
    client = runboard.Client(server.base_url, token, timeout=2.0, flush_timeout=120, flush_interval=0.05)

    def restart(n):
        if n == 400:
            server.stop()
        elif n == 800:
            server.start()
            server.wait_ready()
    try:
        with client.track("chaos.restart") as run:
            job(run, 1500, each=restart)
    finally:
        client.close()
    session = assert_delivered_once(server, run.id, 1500, 4500)
    assert session["state"] == "completed"


def sync(spool_dir, token) -> subprocess.CompletedProcess:
    env = {**os.environ, "RUNBOARD_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "runboard", "sync", "--spool", str(spool_dir), "--timeout", "30s"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("down_from_the_start", [False, True], ids=["down-at-the-end", "down-throughout"])
def test_unsent_reports_are_spooled_and_sync_sends_them_once(server, token, tmp_path, caplog, down_from_the_start):
    caplog.set_level(logging.WARNING, logger="runboard")
    proxy = FaultProxy(server.port)
    if down_from_the_start:
        proxy.refuse()                         # even the session's creation waits in the spool
    spool_dir, kind = tmp_path / "spool", f"chaos.spooled_{int(down_from_the_start)}"
    client = runboard.Client(proxy.url, token, timeout=1.0, flush_timeout=1.0, spool_dir=str(spool_dir))
    try:
        with client.track(kind, label="offline") as run:
            job(run, 1200, each=lambda n: n == 700 and proxy.refuse())
    finally:
        client.close()
    [spooled] = list(spool_dir.glob("*.jsonl"))
    assert run.spool_path == spooled
    assert any(str(spooled) in r.getMessage() and "runboard sync" in r.getMessage() for r in caplog.records)
    proxy.accept()
    try:
        first = sync(spool_dir, token)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "requests sent" in first.stdout and not list(spool_dir.glob("*.jsonl"))
        [only] = sessions_of_kind(server, kind)
        session = assert_delivered_once(server, only["id"], 1200, 3600)
        assert session["state"] == "completed" and session["label"] == "offline"
        again = sync(spool_dir, token)
        assert again.returncode == 0 and "nothing to send" in again.stdout
        assert server.session(only["id"]) == session
        assert len(sessions_of_kind(server, kind)) == 1
    finally:
        proxy.close()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_spool_file_sent_twice_changes_nothing_the_second_time(server, token, tmp_path):
    """A sync that died after sending (the file still there) is repeated: the keys replay."""
    proxy = FaultProxy(server.port)
    proxy.refuse()
    spool_dir = tmp_path / "spool"
    client = runboard.Client(proxy.url, token, timeout=1.0, flush_timeout=0.5, spool_dir=str(spool_dir))
    with client.track("chaos.twice") as run:
        job(run, 300)
    client.close()
    [spooled] = list(spool_dir.glob("*.jsonl"))
    copy = spooled.read_bytes()
    proxy.accept()
    try:
        assert sync(spool_dir, token).returncode == 0
        [only] = sessions_of_kind(server, "chaos.twice")
        before = assert_delivered_once(server, only["id"], 300, 900)
        spooled.write_bytes(copy)              # as if the first sync had died before removing it
        assert sync(spool_dir, token).returncode == 0
        assert server.session(only["id"]) == before
        assert len(sessions_of_kind(server, "chaos.twice")) == 1
    finally:
        proxy.close()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_an_answer_retrying_cannot_fix_is_logged_once_and_the_job_goes_on(server, caplog):
    caplog.set_level(logging.ERROR, logger="runboard")
    client = runboard.Client(server.base_url, "not-a-token", timeout=2.0, flush_timeout=5)
    try:
        with client.track("chaos.refused_token") as run:
            job(run, 50)
    finally:
        client.close()
    assert run.abandoned and "401" in (run.rejection or "")
    assert not run.stop_requested and not run.has_pending()   # no stop for the job, no growing buffer
    assert len([r for r in caplog.records if r.name == "runboard" and "refused" in r.getMessage()]) == 1
    assert sessions_of_kind(server, "chaos.refused_token") == []
