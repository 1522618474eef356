"""``runboard run -- CMD`` and ``runboard sync`` as real processes against a real gunicorn:
exit statuses, the session each run leaves, its log and progress, and stops with a grace.

The command only talks HTTP, so most cases are store-agnostic: they share one SQLite-backed
gunicorn for the module (``one_server``), each under a kind of its own.  The lifecycle and
the stop also run on PostgreSQL through the ``server`` fixture.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

from client_support import client_env, sessions_of_kind, stored_logs, worker_token
from gunicorn_support import Server, wait_for

PY = sys.executable


@pytest.fixture(scope="module")
def one_server(tmp_path_factory):
    """One SQLite-backed gunicorn for the module's store-agnostic cases."""
    workdir = tmp_path_factory.mktemp("command-server")
    server = Server(f"sqlite:///{workdir / 'runboard.db'}", workdir, "command", workers=2)
    server.migrate()
    with server.serving():
        yield server


@pytest.fixture(scope="module")
def one_token(one_server):
    return worker_token(one_server)


def unique_kind(prefix: str = "test") -> str:
    return f"cmd.{prefix}-{uuid.uuid4().hex[:10]}"


def program(code: str) -> list[str]:
    """A child program: ``python -c`` with ``code`` (dedented)."""
    return [PY, "-c", textwrap.dedent(code)]


def runboard_argv(*args: str) -> list[str]:
    return [PY, "-m", "runboard", *args]


def run_runboard(env: dict, cwd, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(runboard_argv(*args), env=env, cwd=cwd, capture_output=True, text=True,
                          check=False, timeout=timeout)


def no_server_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOARD_", "PYTHON"))}
    return {**env, **extra}


def only_session(server, kind: str) -> dict:
    """The one session of ``kind`` (found through the list API), read in full."""
    found = sessions_of_kind(server, kind)
    assert len(found) == 1, found
    return server.session(found[0]["id"])


def messages(server, session_id: str) -> list[tuple[str, str]]:
    return [(e["level"], e["message"]) for e in stored_logs(server, session_id)]


# -- exit statuses -----------------------------------------------------------------------
def test_exit_zero_completes_with_the_exit_code_and_runboard_exits_zero(server, token, tmp_path):
    kind = unique_kind()
    done = run_runboard(client_env(server, token), tmp_path, "run", "--kind", kind, "--",
                        *program("print('hello')"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hello"]          # the program's output is echoed
    session = only_session(server, kind)
    assert session["state"] == "completed" and session["result"] == {"exit_code": 0}
    assert session["owner"] == "pipeline"                 # the worker token's owner
    assert messages(server, session["id"]) == [("info", "hello")]


def test_a_nonzero_exit_fails_with_the_code_and_runboard_exits_with_it(one_server, one_token, tmp_path):
    kind = unique_kind()
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--",
                        *program("import sys; sys.exit(3)"))
    assert done.returncode == 3, done.stderr
    session = only_session(one_server, kind)
    assert session["state"] == "failed" and session["error"] == "exit code 3"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGKILL"])
def test_a_program_killed_by_a_signal_fails_naming_it_and_runboard_exits_128_plus_it(one_server, one_token,
                                                                                     tmp_path, signame):
    kind = unique_kind()
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--",
                        *program(f"import os, signal; os.kill(os.getpid(), signal.{signame})"))
    assert done.returncode == 128 + signal.Signals[signame].value, done.stderr
    session = only_session(one_server, kind)
    assert session["state"] == "failed" and session["error"] == f"killed by {signame}"


def test_a_missing_program_fails_the_session_and_runboard_exits_127(one_server, one_token, tmp_path):
    kind = unique_kind()
    missing = str(tmp_path / "no-such-program")
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--", missing, "-v")
    assert done.returncode == 127
    assert f"cannot run {missing}" in done.stderr
    session = only_session(one_server, kind)
    assert session["state"] == "failed" and session["error"].startswith(f"cannot run {missing}")


def test_without_runboard_url_runboard_exits_2_naming_the_variable(tmp_path):
    marker = tmp_path / "ran"
    done = run_runboard(no_server_env(RUNBOARD_TOKEN="whatever"), tmp_path, "run", "--",
                        *program(f"open({str(marker)!r}, 'w').close()"))
    assert done.returncode == 2
    assert "RUNBOARD_URL" in done.stderr
    assert not marker.exists()                            # refused before starting the program


def test_a_kind_off_the_pattern_is_refused_before_the_program_starts(one_server, one_token, tmp_path):
    marker = tmp_path / "ran"
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", "Nightly Import", "--",
                        *program(f"open({str(marker)!r}, 'w').close()"))
    assert done.returncode == 2
    assert "Nightly Import" in done.stderr and "[a-z0-9_.-]{1,64}" in done.stderr
    assert not marker.exists()


# -- output: log entries and progress ------------------------------------------------------
def test_stdout_lines_are_info_and_stderr_lines_warning_entries_in_the_order_read(one_server, one_token,
                                                                                  tmp_path):
    kind = unique_kind()
    code = """
        import sys, time
        for n in range(1, 7):
            stream = sys.stdout if n % 2 else sys.stderr
            stream.write(f"line {n}\\n")
            stream.flush()
            time.sleep(0.05)                  # the program's pace: each line is read before the next
    """
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--", *program(code))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["line 1", "line 3", "line 5"]
    assert done.stderr.splitlines() == ["line 2", "line 4", "line 6"]
    session = only_session(one_server, kind)
    assert messages(one_server, session["id"]) == [
        ("info", "line 1"), ("warning", "line 2"), ("info", "line 3"),
        ("warning", "line 4"), ("info", "line 5"), ("warning", "line 6")]


def test_a_progress_line_is_a_progress_report_and_a_malformed_one_a_log_entry(one_server, one_token, tmp_path):
    kind = unique_kind()
    code = """
        import sys
        print("start")
        print('::progress {"current": 2, "total": 4}')
        print("::progress nope")
        print("::progress [1, 2]")
        print('::progress {"current": 3}', file=sys.stderr)   # only stdout carries progress
        print("end")
    """
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--", *program(code))
    assert done.returncode == 0, done.stderr
    session = only_session(one_server, kind)
    assert session["progress"] == {"current": 2, "total": 4, "percent": 50.0}
    logged = messages(one_server, session["id"])
    assert [entry for entry in logged if entry[0] == "info"] == [
        ("info", "start"), ("info", "::progress nope"), ("info", "::progress [1, 2]"), ("info", "end")]
    assert ("warning", '::progress {"current": 3}') in logged


def test_lines_the_server_would_refuse_stay_text_and_the_reports_after_them_arrive(one_server, one_token,
                                                                                   tmp_path):
    """The program prints what it likes: a NUL byte, progress with NaN, 1e999 or a lone
    surrogate, or nesting past the parser's recursion limit must neither lose the later
    reports (one refused report abandons a run) nor kill the reader draining the pipe."""
    kind = unique_kind()
    code = r"""
        import sys
        print('::progress {"current": NaN, "total": 4}')
        print('::progress {"current": 1e999}')
        print('::progress {"step": "\\ud800"}')
        print('::progress {"step": "a\\u0000b"}')
        print("::progress " + "[" * 100000)
        sys.stdout.write("nul\x00byte\n")
        print('::progress {"current": 1, "total": 4}')
        for n in range(3000):                  # more than a pipe holds: the reader must still drain it
            print(f"row {n}")
    """
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--", *program(code))
    assert done.returncode == 0, done.stderr
    session = only_session(one_server, kind)
    assert session["state"] == "completed", session
    assert session["progress"] == {"current": 1, "total": 4, "percent": 25.0}
    logged = [message for _, message in messages(one_server, session["id"])]
    assert logged[:4] == ['::progress {"current": NaN, "total": 4}', '::progress {"current": 1e999}',
                          '::progress {"step": "\\ud800"}', '::progress {"step": "a\\u0000b"}']
    assert logged[4].startswith("::progress [[[[") and logged[4].endswith(" …")   # cut to the 8 KiB a message holds
    assert logged[5] == "nul\ufffdbyte"
    assert logged[6:] == [f"row {n}" for n in range(3000)]
    assert "Traceback" not in done.stderr


def test_a_report_the_server_refuses_does_not_stop_the_program(one_server, one_token, tmp_path):
    """Progress nested deeper than the server keeps is refused, which abandons the run; the
    client says the job goes on, so the program must not get a stop's SIGTERM."""
    kind = unique_kind()
    code = """
        import sys, time
        print('::progress {"deep": ' + "[" * 40 + "]" * 40 + "}", flush=True)
        for n in range(30):                   # ~1.5 s: time enough for a wrong SIGTERM to land
            print(f"still here {n}", flush=True)
            time.sleep(0.05)
        sys.exit(5)
    """
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--", *program(code))
    assert done.returncode == 5, done.stderr
    assert done.stdout.splitlines()[-1] == "still here 29"
    assert "refused" in done.stderr
    assert only_session(one_server, kind)["state"] != "stopped"


def test_when_our_output_is_closed_the_program_still_runs_to_the_end(one_server, one_token, tmp_path):
    """``runboard run -- CMD | head -1``: echoing into a closed pipe must not stop the
    reader, or the program blocks on its own full pipe forever."""
    kind = unique_kind()
    code = """
        for n in range(300):
            print(f"{n:04d} " + "x" * 1000)
    """
    with subprocess.Popen(runboard_argv("run", "--kind", kind, "--", *program(code)),
                          env=client_env(one_server, one_token), cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:
        try:
            assert process.stdout.readline().startswith(b"0000 ")
            process.stdout.close()                        # what `| head -1` does
            _, err = process.communicate(timeout=30)
            assert process.returncode == 0, err
        finally:
            process.kill()
    session = only_session(one_server, kind)
    assert session["state"] == "completed"
    assert len(stored_logs(one_server, session["id"])) == 300


def test_a_background_process_holding_the_output_does_not_keep_the_session_running(one_server, one_token,
                                                                                 tmp_path):
    """``cmd &`` inside the program keeps its pipes open after it exits: the session still
    ends with the program, a warning says what is no longer captured, and nothing the
    program wrote itself is lost."""
    kind = unique_kind()
    script = 'sleep 120 & echo "$!"; echo "the program is done"'
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--",
                        "sh", "-c", script, timeout=60)       # waiting for the sleep would time out
    left_running = int(done.stdout.split()[0])
    try:
        assert done.returncode == 0, done.stderr
        session = only_session(one_server, kind)
        assert session["state"] == "completed" and session["result"] == {"exit_code": 0}
        assert messages(one_server, session["id"]) == [
            ("info", str(left_running)), ("info", "the program is done"),
            ("warning", "processes the program started still hold its output 2s after it ended; "
                        "what they write from now on is not captured")]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(left_running, signal.SIGKILL)


# -- what the session holds ------------------------------------------------------------------
def test_kind_label_and_meta_are_stored_with_json_values_parsed(one_server, one_token, tmp_path):
    kind = unique_kind()
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind,
                        "--label", "nightly import", "--meta", "retries=3", "--meta", "name=x",
                        "--meta", 'opts={"deep": true}', "--meta", "ratio=0.5", "--meta", "odd=NaN",
                        "--meta", "eq=a=b", "--", *program("pass"))
    assert done.returncode == 0, done.stderr
    session = only_session(one_server, kind)
    assert session["kind"] == kind and session["label"] == "nightly import"
    assert session["meta"] == {"retries": 3, "name": "x", "opts": {"deep": True}, "ratio": 0.5,
                               "odd": "NaN", "eq": "a=b"}
    assert session["state"] == "completed"


def test_the_default_label_is_the_command_line(one_server, one_token, tmp_path):
    kind = unique_kind()
    argv = program("pass")
    done = run_runboard(client_env(one_server, one_token), tmp_path, "run", "--kind", kind, "--", *argv)
    assert done.returncode == 0, done.stderr
    assert only_session(one_server, kind)["label"] == shlex.join(argv)


def test_the_default_kind_is_cmd_and_the_program_name_normalised(one_server, one_token, tmp_path):
    tag = uuid.uuid4().hex[:8]
    odd = tmp_path / f"My Tool+{tag}!"
    odd.write_text(f"#!{PY}\nprint('odd ran')\n")
    odd.chmod(0o755)
    python3 = tmp_path / "python3"
    python3.symlink_to(PY)
    env = client_env(one_server, one_token)
    for argv in ([str(python3), "-c", "pass"], [str(odd)]):
        done = run_runboard(env, tmp_path, "run", "--", *argv)
        assert done.returncode == 0, done.stderr
    assert only_session(one_server, "cmd.python3")["state"] == "completed"
    session = only_session(one_server, f"cmd.my_tool_{tag}")
    assert session["state"] == "completed"
    assert messages(one_server, session["id"]) == [("info", "odd ran")]


def test_default_kind_cuts_long_names_to_64_and_never_leaves_an_empty_name():
    from runboard.command import default_kind
    assert default_kind("/usr/bin/" + "x" * 100) == "cmd." + "x" * 60
    assert default_kind("!!!") == "cmd.program"
    assert default_kind("Build.SH") == "cmd.build.sh"


# -- stops ---------------------------------------------------------------------------------
TRAPS_TERM = """
    import signal, sys, time
    def on_term(number, frame):
        print("got TERM", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    deadline = time.monotonic() + 30          # never outlive the test
    while time.monotonic() < deadline:
        time.sleep(0.02)
    sys.exit(9)
"""
IGNORES_TERM = """
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.02)
    sys.exit(9)
"""


def stopped_run(server, token, tmp_path, code: str, *options: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``runboard run`` on ``code``; once its session logged "ready" (the program's
    handler is set), ask the API to stop it.  The finished process and the session's id."""
    kind = unique_kind("stop")
    with subprocess.Popen(runboard_argv("run", "--kind", kind, *options, "--", *program(code)),
                          env=client_env(server, token), cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            session_id = wait_for(lambda: [s["id"] for s in sessions_of_kind(server, kind)], 20,
                                  f"a session of {kind}")[0]
            wait_for(lambda: ("info", "ready") in messages(server, session_id), 20, "the program's 'ready' line")
            status, body = server.call("POST", f"/api/v1/sessions/{session_id}/stop")
            assert status == 202, body
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), session_id


def test_a_stop_request_sends_sigterm_and_the_session_ends_stopped(server, token, tmp_path):
    done, session_id = stopped_run(server, token, tmp_path, TRAPS_TERM)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ready", "got TERM"]
    session = server.session(session_id)
    assert session["state"] == "stopped" and session["result"] == {"exit_code": 0}
    logged = [m for _, m in messages(server, session_id)]
    assert logged.index("ready") < logged.index("got TERM")
    assert logged[-1] == "stopped: exit code 0"


def test_a_program_ignoring_sigterm_is_killed_after_the_grace_and_runboard_exits_137(one_server, one_token,
                                                                                     tmp_path):
    done, session_id = stopped_run(one_server, one_token, tmp_path, IGNORES_TERM, "--grace", "1s")
    assert done.returncode == 128 + signal.SIGKILL, done.stderr
    assert one_server.session(session_id)["state"] == "stopped"
    logged = messages(one_server, session_id)
    assert ("info", "stop requested: sending SIGTERM, SIGKILL after 1s") in logged
    assert ("warning", "still running 1s after SIGTERM: sending SIGKILL") in logged
    assert logged[-1] == ("info", "stopped: killed by SIGKILL")


# -- the console script and sync -------------------------------------------------------------
def test_the_installed_console_script_runs_a_program_as_a_session(client_python, one_server, one_token, tmp_path):
    kind = unique_kind()
    script = client_python.parent / "runboard"
    done = subprocess.run([str(script), "run", "--kind", kind, "--", *program("print('via script')")],
                          env=client_env(one_server, one_token), cwd=tmp_path, capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    session = only_session(one_server, kind)
    assert session["state"] == "completed" and session["result"] == {"exit_code": 0}
    assert messages(one_server, session["id"]) == [("info", "via script")]


def test_sync_with_an_empty_spool_says_nothing_to_send_and_exits_0(tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    done = run_runboard(no_server_env(RUNBOARD_TOKEN="whatever"), tmp_path, "sync", "--spool", str(spool_dir))
    assert done.returncode == 0, done.stderr
    assert "nothing to send" in done.stdout
