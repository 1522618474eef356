"""``runboard.celery.track_tasks``: a real Celery worker (prefork, two children, Redis
broker) from a virtualenv with ``client[celery]``, against a real gunicorn on SQLite and
PostgreSQL; every task of its app is a session, checked in what the server stored.  One
worker per store runs every case; tasks are published from this process.  The in-process
cases drive Celery's tracer directly, from threads, for what a single pool child cannot show.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import socket
import threading
import uuid

import pytest

from broker_support import broker_url, queue_name
from celery_support import Worker, make_celery_venv, session_for
from client_support import client_env, run_script, sessions_of_kind, stored_logs
from gunicorn_support import ROOT, wait_for

celery = pytest.importorskip("celery")


@pytest.fixture(scope="session")
def celery_python(tmp_path_factory):
    """The python of a virtualenv with ``client[celery]`` installed (built once per run).
    A ``client/build`` that pip leaves in the checkout meanwhile (this venv's, or
    ``client_python``'s) is removed at the end."""
    build = ROOT / "client" / "build"
    had_build = build.exists()
    yield make_celery_venv(tmp_path_factory.mktemp("celery-venv") / "venv")
    if not had_build:
        shutil.rmtree(build, ignore_errors=True)


@pytest.fixture(scope="module")
def broker():
    return broker_url("redis")


@pytest.fixture(scope="module")
def worker(celery_python, server, token, broker, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("celery-worker")
    marks = workdir / "marks"
    marks.mkdir()
    queue = queue_name("celery-tracking")
    env = client_env(server, token, RB_TEST_BROKER=broker, RB_TEST_QUEUE=queue, RB_TEST_MARKS=str(marks))
    worker = Worker(celery_python, workdir, env, queue)
    worker.marks = marks
    with worker.running():
        yield worker


@pytest.fixture(scope="module")
def publisher(broker, worker):
    """A Celery app in this process that sends to the worker's queue (it knows no tasks)."""
    app = celery.Celery("rbtests", broker=broker)
    app.conf.update(task_default_queue=worker.queue, broker_connection_retry_on_startup=True)
    yield app
    app.close()


def send(publisher, name: str, *args, **options) -> str:
    task_id = options.pop("task_id", None) or uuid.uuid4().hex
    publisher.send_task(name, args=list(args), task_id=task_id, **options)
    return task_id


def worker_hostname() -> str:
    return f"t1@{socket.gethostname()}"


# -- through the worker ------------------------------------------------------------------
def test_a_dict_result_completes_the_session_named_after_the_task(server, worker, publisher):
    task_id = send(publisher, "rbtasks.Returns Dict", 21)
    session = session_for(server, "rbtasks.returns_dict", task_id, worker=worker)
    assert session["state"] == "completed", session
    assert session["result"]["doubled"] == 42
    assert (session["kind"], session["label"], session["owner"]) == ("rbtasks.returns_dict", task_id, "pipeline")
    assert session["worker_id"] == worker_hostname()
    assert session["meta"] == {"celery_task": "rbtasks.Returns Dict", "celery_task_id": task_id}
    assert session["started_at"] and session["error"] is None


def test_the_label_and_owner_come_from_the_headers(server, worker, publisher):
    task_id = send(publisher, "rbtasks.Returns Dict", 1,
                   headers={"runboard_label": "input.csv", "runboard_owner": "alice@example.com"})
    session = session_for(server, "rbtasks.returns_dict", task_id, worker=worker)
    assert (session["state"], session["label"], session["owner"]) == ("completed", "input.csv", "alice@example.com")


def test_a_non_dict_result_is_kept_as_value_or_its_repr(server, worker, publisher):
    listed = send(publisher, "rbtasks.returns_list")
    a_set = send(publisher, "rbtasks.returns_set")
    assert session_for(server, "rbtasks.returns_list", listed, worker=worker)["result"] == {"value": [1, "two", None]}
    assert session_for(server, "rbtasks.returns_set", a_set, worker=worker)["result"] == {"value": "{1, 2, 3}"}


def test_an_exception_fails_the_session_with_its_summary_and_traceback(server, worker, publisher):
    task_id = send(publisher, "rbtasks.raises")
    session = session_for(server, "rbtasks.raises", task_id, worker=worker)
    assert (session["state"], session["error"]) == ("failed", "ValueError: broken input 7")
    entries = stored_logs(server, session["id"])
    assert [(e["level"], e["message"]) for e in entries][0] == ("info", "about to fail")
    assert entries[-1]["level"] == "error"
    assert entries[-1]["message"].startswith("Traceback (most recent call last)")
    assert 'raise ValueError("broken input 7")' in entries[-1]["message"]
    assert entries[-1]["message"].endswith("ValueError: broken input 7")


def test_a_retry_logs_a_warning_and_the_next_attempt_goes_on_in_the_same_session(server, worker, publisher):
    task_id = send(publisher, "rbtasks.flaky", headers={"runboard_label": "flaky.csv"})
    session = session_for(server, "rbtasks.flaky", task_id, worker=worker)
    assert session["state"] == "completed", session
    assert session["result"] == {"attempts": 2, "session": session["id"]}     # the second attempt saw it too
    assert session["label"] == "flaky.csv" and session["worker_id"] == worker_hostname()
    entries = [(e["level"], e["message"]) for e in stored_logs(server, session["id"])]
    assert ("info", f"first attempt, session {session['id']}") in entries
    assert ("info", f"second attempt, session {session['id']}") in entries
    warnings = [m for level, m in entries if level == "warning"]
    assert warnings == ["retry 1: Retry in 0s: RuntimeError('transient')"], entries
    assert len(sessions_of_kind(server, "rbtasks.flaky")) == len(
        {s["meta"]["celery_task_id"] for s in sessions_of_kind(server, "rbtasks.flaky")})


def test_the_tasks_logging_goes_to_its_log_and_the_machinery_does_not(server, worker, publisher):
    task_id = send(publisher, "rbtasks.logs")
    session = session_for(server, "rbtasks.logs", task_id, worker=worker)
    assert session["state"] == "completed" and session["result"] == {"value": None}
    entries = stored_logs(server, session["id"])
    assert [(e["level"], e["message"], e["fields"]) for e in entries] == [
        ("info", "hello from the task", {"rows": 12}),
        ("warning", "the task logger says hi", {}),
        ("warning", "a printed line", {}),
    ]


def test_current_run_reports_progress_usage_meta_and_entries(server, worker, publisher):
    task_id = send(publisher, "rbtasks.reports")
    session = session_for(server, "rbtasks.reports", task_id, worker=worker)
    assert session["state"] == "completed" and session["result"] == {"ok": True}
    assert session["progress"] == {"current": 3, "total": 4, "step": "fit", "percent": 75.0}
    assert session["usage"] == {"tokens": 120, "cost": 0.5}
    assert session["meta"]["engine"] == "v2"
    assert [(e["message"], e["fields"]) for e in stored_logs(server, session["id"])] == [("explicit entry", {"n": 1})]


def test_a_terminated_task_is_stopped_and_the_pool_goes_on(server, worker, publisher):
    task_id = send(publisher, "rbtasks.long")
    running = session_for(server, "rbtasks.long", task_id, states="running", worker=worker)
    wait_for(lambda: server.session(running["id"])["progress"].get("current", 0) > 2, 20, "the long task looping")
    publisher.control.revoke(task_id, terminate=True)
    session = session_for(server, "rbtasks.long", task_id, states="stopped", worker=worker)
    assert session["id"] == running["id"] and session["worker_id"] == worker_hostname()
    assert session["result"] is None
    assert stored_logs(server, session["id"])[-1]["message"] == "task revoked and terminated (signal 15)"
    after = send(publisher, "rbtasks.Returns Dict", 2)   # the pool replaced the killed child
    assert session_for(server, "rbtasks.returns_dict", after, worker=worker)["state"] == "completed"


def test_a_child_killed_at_the_hard_time_limit_is_failed_by_the_main_process(server, worker, publisher):
    task_id = send(publisher, "rbtasks.overrun",
                   headers={"runboard_label": "overrun.csv", "runboard_owner": "bob@example.com"})
    session = session_for(server, "rbtasks.overrun", task_id, worker=worker)
    assert session["state"] == "failed", session
    assert session["error"].startswith("TimeLimitExceeded"), session
    assert (session["label"], session["owner"]) == ("overrun.csv", "bob@example.com")   # one session, same identity
    assert session["progress"]["current"] > 1
    last = stored_logs(server, session["id"])[-1]
    assert last["level"] == "error" and "TimeLimitExceeded" in last["message"]


def test_a_task_that_expired_before_it_ran_is_a_stopped_session_that_never_started(server, worker, publisher):
    task_id = send(publisher, "rbtasks.Returns Dict", 3,
                   expires=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
    session = session_for(server, "rbtasks.returns_dict", task_id, states="stopped", worker=worker)
    assert session["started_at"] is None and session["worker_id"] is None and session["label"] == task_id
    assert [(e["level"], e["message"]) for e in stored_logs(server, session["id"])] == [("warning", "task expired")]


def test_an_excluded_task_is_not_tracked_and_has_no_current_run(server, worker, publisher):
    mark = uuid.uuid4().hex
    send(publisher, "rbtasks.untracked", mark)
    seen = wait_for(lambda: (worker.marks / mark).exists() and (worker.marks / mark).read_text(), 30,
                    "the excluded task's mark")
    assert seen == '{"current_run_is_none": true}'
    assert sessions_of_kind(server, "rbtasks.untracked") == []


def test_the_worker_logged_no_runboard_error(worker, server, publisher):
    task_id = send(publisher, "rbtasks.Returns Dict", 4)
    session_for(server, "rbtasks.returns_dict", task_id, worker=worker)
    text = worker.log_text()
    assert "Signal handler" not in text and "runboard:" not in text and "refused" not in text, text


# -- in this process ---------------------------------------------------------------------
@pytest.fixture
def tracked_app(server, token):
    """A Celery app of this process tracked with an explicit client; afterwards the
    signals, the logging router and the registry are as before."""
    import runboard
    from runboard import celery as rbcelery
    from runboard.celery import process, receivers, routing
    client = runboard.Client(server.base_url, token)
    app = celery.Celery("inproc", set_as_current=False)
    app.conf.update(task_ignore_result=True)
    before = dict(process.trackings)
    try:
        yield app, client, rbcelery
    finally:
        client.close()
        process.trackings.clear()
        process.trackings.update(before)
        if not before:
            for signal, receiver in receivers.RECEIVERS:
                signal.disconnect(receiver, dispatch_uid=f"runboard.celery.{receiver.__name__}")
            for name in ("", "celery.task"):
                logging.getLogger(name).removeHandler(routing.router)


def trace(task, task_id: str, *args, errors: list):
    """Run ``task`` as a pool process would (Celery's tracer: the signals, no worker)."""
    from celery.app.trace import trace_task
    try:
        trace_task(task, task_id, list(args), {}, {"id": task_id, "hostname": "inproc@box"}, app=task.app)
    except BaseException as exc:               # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_current_run_is_none_outside_a_task_and_each_thread_sees_its_own(server, tracked_app):
    import runboard
    app, client, rbcelery = tracked_app
    rbcelery.track_tasks(app, client)
    rbcelery.track_tasks(app, client)                    # connected once: one session, entries once
    assert runboard.current_run() is None
    inside = threading.Barrier(2, timeout=20)
    logger = logging.getLogger("inproc.work")
    logger.setLevel(logging.INFO)
    seen = {}

    @app.task(name="inproc.Work")
    def work(tag):
        run = runboard.current_run()
        inside.wait()                                    # both tasks are running at once
        for n in range(20):
            logger.info("from %s", tag, extra={"n": n})
        seen[tag] = run.id
        inside.wait()
        return {"tag": tag, "same": runboard.current_run() is run}

    ids = {tag: uuid.uuid4().hex for tag in ("a", "b")}
    errors = []
    threads = [threading.Thread(target=trace, args=(work, ids[tag], tag), kwargs={"errors": errors}) for tag in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and not any(thread.is_alive() for thread in threads), errors
    assert runboard.current_run() is None
    for tag, task_id in ids.items():
        session = session_for(server, "inproc.work", task_id)
        assert session["id"] == seen[tag] and session["state"] == "completed"
        assert session["result"] == {"tag": tag, "same": True} and session["worker_id"] == "inproc@box"
        entries = stored_logs(server, session["id"])
        assert [(e["message"], e["fields"]["n"]) for e in entries] == [(f"from {tag}", n) for n in range(20)]
    prerun = [key for key, _ in celery.signals.task_prerun.receivers if key[0] == "runboard.celery._on_prerun"]
    assert len(prerun) == 1


def test_include_exclude_and_kind_normalisation(tracked_app):
    from runboard.celery import process
    from runboard.celery.results import result_of
    app, client, rbcelery = tracked_app
    rbcelery.track_tasks(app, client, include=["proj.*", "celery.chord_unlock"], exclude=["proj.secret*"])
    tracking = process.trackings[id(app)]
    assert tracking.tracks("proj.tasks.add") and tracking.tracks("celery.chord_unlock")
    assert not tracking.tracks("proj.secret.key") and not tracking.tracks("other.task")
    rbcelery.track_tasks(app, client)                    # a second call replaces the settings
    assert tracking.tracks("other.task") and not tracking.tracks("celery.backend_cleanup")
    assert rbcelery.kind_of("Proj.Tasks.Send Mail!") == "proj.tasks.send_mail"
    assert rbcelery.kind_of("***") == "task" and len(rbcelery.kind_of("x" * 100)) == 64
    assert result_of({"a": 1}) == {"a": 1}
    assert result_of((1, 2)) == {"value": (1, 2)}                 # sent as a JSON array
    assert result_of({"a": float("nan")}) == {"value": "{'a': nan}"}
    assert result_of(b"raw") == {"value": "b'raw'"}


def test_a_client_given_is_copied_in_another_process_and_a_factory_is_called_per_process(server, token, tracked_app):
    import runboard
    from runboard.celery import process
    app, client, rbcelery = tracked_app
    given = runboard.Client(server.base_url, token, flush_timeout=3.0, heartbeat_interval=2.0)
    try:
        rbcelery.track_tasks(app, given)
        tracking = process.trackings[id(app)]
        assert tracking.client() is given                        # the process that called track_tasks
        tracking.forked()
        tracking.source_pid = -1                                 # as in a forked pool child
        copy = tracking.client()
        assert copy is not given and tracking.client() is copy
        assert (copy.url, copy.flush_timeout, copy.heartbeat_interval) == (given.url, 3.0, 2.0)
        with copy.track("inproc.copied") as run:                 # the same token works
            pass
        assert server.session(run.id)["state"] == "completed"
        copy.close()
        made = []
        rbcelery.track_tasks(app, lambda: made.append(1) or client)
        tracking.forked()
        assert tracking.client() is client and tracking.client() is client and made == [1]
        rbcelery.track_tasks(app, lambda: "not a client")
        with pytest.raises(TypeError):
            tracking.client()
    finally:
        given.close()


def test_import_runboard_needs_no_celery(client_python, tmp_path):
    done = run_script(client_python, """
        import json, runboard
        try:
            import runboard.celery
            celery = "imported"
        except ImportError as exc:
            celery = type(exc).__name__
        print(json.dumps({"current_run": runboard.current_run(), "celery": celery,
                          "exported": "current_run" in runboard.__all__}))
    """, {}, tmp_path)
    assert done.stdout.strip().splitlines()[-1] == '{"current_run": null, "celery": "ModuleNotFoundError", "exported": true}'
