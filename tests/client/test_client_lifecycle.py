"""The client as a user installs it — a virtualenv with only ``client/`` — against a real
gunicorn on SQLite and PostgreSQL: lifecycle, failure, stop, the logging handler and
nested meta, each checked in what the server stored."""
from __future__ import annotations

import json
import time

from client_support import client_env, last_json, run_script, stored_logs


def test_the_venv_holds_the_client_and_none_of_the_server(client_python, tmp_path):
    done = run_script(client_python, """
        import importlib.util, json, runboard
        print(json.dumps({name: importlib.util.find_spec(name) is not None
                          for name in ("flask", "sqlalchemy", "psycopg", "webapp", "repositories")}))
    """, {}, tmp_path)
    assert last_json(done) == {"flask": False, "sqlalchemy": False, "psycopg": False,
                               "webapp": False, "repositories": False}


def test_a_tracked_block_is_created_started_reported_and_completed(client_python, server, token, tmp_path):
    done = run_script(client_python, """
        import json, runboard
        rb = runboard.Client(worker_id="etl-host:7")
        rows = list(range(250))
        with rb.track("etl.nightly", label="input.csv", params={"day": "2026-12-01"}, meta={"engine": "v2"}) as run:
            for i, row in enumerate(rows):
                run.progress(current=i + 1, total=len(rows), step="load")
                run.log("info", "loaded row", row=i)
                run.usage(tokens=120, cost=0.0004)
            run.result = {"done": len(rows)}
        print(json.dumps({"id": run.id}))
    """, client_env(server, token), tmp_path)
    session = server.session(last_json(done)["id"])
    assert session["state"] == "completed" and session["result"] == {"done": 250}
    assert (session["kind"], session["label"], session["owner"]) == ("etl.nightly", "input.csv", "pipeline")
    assert session["params"] == {"day": "2026-12-01"} and session["meta"] == {"engine": "v2"}
    assert session["progress"] == {"current": 250, "total": 250, "step": "load", "percent": 100.0}
    assert session["usage"] == {"tokens": 250 * 120, "cost": round(250 * 0.0004, 10)} or \
        (session["usage"]["tokens"] == 30000 and abs(session["usage"]["cost"] - 0.1) < 1e-9)
    assert session["worker_id"] == "etl-host:7"
    entries = stored_logs(server, session["id"])
    assert [(e["seq"], e["message"], e["fields"]) for e in entries] == \
        [(n + 1, "loaded row", {"row": n}) for n in range(250)]
    ats = [e["at"] for e in entries]
    assert all(ats) and ats == sorted(ats)          # the time each call happened, in order
    assert "done" not in done.stderr


def test_an_exception_fails_the_session_with_its_traceback_and_propagates(client_python, server, token, tmp_path):
    done = run_script(client_python, """
        import json, sys, runboard
        rb = runboard.Client()
        try:
            with rb.track("etl.failing") as run:
                run.log("info", "about to fail")
                raise ValueError("boom at row 3")
        except ValueError as exc:
            print(json.dumps({"id": run.id, "propagated": str(exc)}))
    """, client_env(server, token), tmp_path)
    out = last_json(done)
    assert out["propagated"] == "boom at row 3"
    session = server.session(out["id"])
    assert session["state"] == "failed" and session["error"] == "ValueError: boom at row 3"
    entries = stored_logs(server, out["id"])
    assert entries[0]["message"] == "about to fail"
    assert entries[-1]["level"] == "error"
    assert "Traceback (most recent call last)" in entries[-1]["message"]
    assert 'raise ValueError("boom at row 3")' in entries[-1]["message"]


def test_a_stop_request_is_seen_within_two_seconds_and_ends_stopped(client_python, server, token, tmp_path):
    process_code = """
        import json, sys, time, runboard
        rb = runboard.Client()
        with rb.track("sim.long") as run:
            print(json.dumps({"id": run.id}), flush=True)
            deadline = time.monotonic() + 30
            i = 0
            while not run.should_stop() and time.monotonic() < deadline:
                i += 1
                time.sleep(0.01)               # the job's own work
            seen = time.time()
            run.result = {"done": i}
        print(json.dumps({"seen": seen}), flush=True)
    """
    import subprocess
    (tmp_path / "job.py").write_text(__import__("textwrap").dedent(process_code))
    process = subprocess.Popen([str(client_python), "-I", str(tmp_path / "job.py")], cwd=tmp_path,
                               env=client_env(server, token), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        session_id = json.loads(process.stdout.readline())["id"]
        server.wait_state(session_id, "running")
        asked = time.time()
        status, body = server.call("POST", f"/api/v1/sessions/{session_id}/stop")
        assert status == 202, body
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["seen"] - asked < 2.0
    session = server.session(session_id)
    assert session["state"] == "stopped" and session["result"]["done"] > 0


def test_the_logging_handler_maps_levels_keeps_extra_and_exceptions_and_detaches(client_python, server, token,
                                                                                  tmp_path):
    done = run_script(client_python, """
        import json, logging, runboard
        logger = logging.getLogger("etl")
        logger.setLevel(logging.DEBUG)
        rb = runboard.Client()
        with rb.track("etl.logging") as run:
            with run.capture_logging(logger):
                logger.debug("too fine for INFO")
                logger.info("rows %d", 12, extra={"table": "orders", "rows": 12, "handle": object()})
                logger.warning("slow")
                logger.error("bad row")
                logger.critical("disk full")
                try:
                    1 / 0
                except ZeroDivisionError:
                    logger.exception("division failed")
            logger.info("after the block")
            with run.capture_logging(logger, level=logging.DEBUG):
                logger.debug("now fine enough")
        print(json.dumps({"id": run.id, "handlers": len(logger.handlers)}))
    """, client_env(server, token), tmp_path)
    out = last_json(done)
    assert out["handlers"] == 0
    entries = stored_logs(server, out["id"])
    assert [(e["level"], e["message"].splitlines()[0]) for e in entries] == [
        ("info", "rows 12"), ("warning", "slow"), ("error", "bad row"), ("error", "disk full"),
        ("error", "division failed"), ("debug", "now fine enough")]
    assert entries[0]["fields"] == {"table": "orders", "rows": 12}
    assert "ZeroDivisionError: division by zero" in entries[4]["message"]
    assert "Traceback (most recent call last)" in entries[4]["message"]


def test_nested_meta_and_progress_patches_compose_exactly(client_python, server, token, tmp_path):
    done = run_script(client_python, """
        import json, runboard
        rb = runboard.Client()
        with rb.track("etl.meta", meta={"engine": "v2", "opts": {"seed": 1}}) as run:
            run.meta(opts={"a": 1})
            run.meta(opts={"b": 2})
            run.meta(opts={"a": None, "c": {"d": 1}})
            run.flush(timeout=10)
            run.meta(opts={"c": {"e": 2}}, engine=None)
            run.progress(stage={"name": "load", "n": 1})
            run.progress(stage={"n": 2}, current=1, total=4)
            run.progress(stage=5)
            run.progress(stage={"again": True})
        print(json.dumps({"id": run.id}))
    """, client_env(server, token), tmp_path)
    session = server.session(last_json(done)["id"])
    assert session["meta"] == {"opts": {"seed": 1, "b": 2, "c": {"d": 1, "e": 2}}}
    assert session["progress"] == {"stage": {"again": True}, "current": 1, "total": 4, "percent": 25.0}


def test_a_job_that_only_logs_still_sees_a_stop_within_two_seconds(server, token):
    """Log batches carry no stop flag, so the sender reads it even while it delivers."""
    import threading

    import runboard
    client = runboard.Client(server.base_url, token)
    seen = {}
    try:
        with client.track("sim.chatty") as run:
            asked = threading.Event()

            def stop_it():
                server.wait_state(run.id, "running")
                status, body = server.call("POST", f"/api/v1/sessions/{run.id}/stop")
                assert status == 202, body
                seen["asked"] = time.monotonic()
                asked.set()
            threading.Thread(target=stop_it, daemon=True).start()
            deadline = time.monotonic() + 30
            while not run.should_stop() and time.monotonic() < deadline:
                run.log("info", "still going")
                time.sleep(0.05)               # the job's own pace: a line every 50 ms
            seen["stopped"] = time.monotonic()
        assert asked.is_set() and seen["stopped"] - seen["asked"] < 2.0
    finally:
        client.close()
    assert server.session(run.id)["state"] == "stopped"


def test_a_released_run_stays_running_and_a_later_process_goes_on_with_it(client_python, server, token, tmp_path):
    """``track(start=False)`` only creates; ``release()`` delivers and lets go without a
    finish, and the run's later calls are ignored; a ``track`` under the same key in
    another process reports on that session."""
    first = run_script(client_python, """
        import json, runboard
        rb = runboard.Client(worker_id="host-a")
        queued = rb.track("etl.retried", label="t-1", idempotency_key="task-t-1", start=False)
        queued.release()
        pending = queued.id
        run = rb.track("etl.retried", label="t-1", idempotency_key="task-t-1")
        run.progress(current=1, total=4)
        run.log("warning", "attempt 1 failed, retrying")
        run.release()
        run.progress(current=2, total=4)           # the session is no longer this run's:
        run.log("info", "after the release")       # ignored, and nothing of it sent
        run.flush()
        run.finish("completed")
        print(json.dumps({"pending": pending, "id": run.id, "state": run.state}))
    """, client_env(server, token), tmp_path)
    answer = last_json(first)
    assert answer["pending"] == answer["id"] and answer["state"] is None
    session = server.session(answer["id"])
    assert session["state"] == "running" and session["worker_id"] == "host-a"
    assert session["progress"] == {"current": 1, "total": 4, "percent": 25.0}
    second = run_script(client_python, """
        import json, runboard
        rb = runboard.Client(worker_id="host-b")
        with rb.track("etl.retried", label="t-1", idempotency_key="task-t-1") as run:
            run.progress(current=4, total=4)
            run.log("info", "attempt 2 done")
        print(json.dumps({"id": run.id}))
    """, client_env(server, token), tmp_path)
    assert last_json(second)["id"] == answer["id"]
    session = server.session(answer["id"])
    assert session["state"] == "completed" and session["progress"]["percent"] == 100.0
    assert [e["message"] for e in stored_logs(server, answer["id"])] == \
        ["attempt 1 failed, retrying", "attempt 2 done"]
