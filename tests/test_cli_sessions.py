"""``flask sessions …`` and ``flask usage report`` on SQLite and PostgreSQL.

Age is simulated by writing timestamps into the database (the app's store has no clock to
move), so nothing here sleeps.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from repositories.records import utcnow
from repositories.sql.rows import sessions as sessions_table
from repositories.states import State
from webapp import create_app
from webapp.extensions import db
from webapp.store import close_repository

NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(params=["sqlite", "postgresql"])
def make_app(request, tmp_path):
    """Build an app on a fresh database of the parametrised backend, with extra config."""
    url = (f"sqlite:///{tmp_path / 'cli.db'}" if request.param == "sqlite"
           else request.getfixturevalue("empty_postgres_url"))
    apps = []

    def make(**config):
        app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off", "TESTING": True, **config})
        app.extensions["runboard"].create_schema()
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_repository(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def repo(app):
    return app.extensions["runboard"]


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def ok(app, *args):
    result = cli(app, *args)
    assert result.exit_code == 0, result.output
    return result


def make_session(repo, state="pending", *, owner="ana", kind="batch", label="", logs=0, tokens=0,
                 percent=None, engine="numpy"):
    session = repo.create(kind=kind, owner=owner, label=label, meta={"engine": engine})
    if logs:
        repo.append_logs(session.id, [{"level": "info", "message": f"line {n}"} for n in range(1, logs + 1)])
    if state != "pending":
        repo.start(session.id)
        progress = {"current": percent, "total": 100} if percent is not None else None
        repo.report_progress(session.id, progress=progress, usage={"tokens": tokens, "cost": tokens / 1000})
    if state in ("completed", "failed", "stopped"):
        repo.finish(session.id, State(state), result={"answer": 42} if state == "completed" else None,
                    error="boom" if state == "failed" else None)
    return repo.get(session.id)


def age(app, session_id, **ago):
    """Move a session's timestamps into the past, e.g. ``finished_at=timedelta(days=10)``."""
    values = {column: utcnow() - delta for column, delta in ago.items()}
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(update(sessions_table).where(sessions_table.c.id == session_id).values(**values))


def exists(repo, session_id):
    return any(s.id == session_id for s in repo.list_sessions(limit=200).items)


# -- list -------------------------------------------------------------------------------
def test_list_prints_a_table_newest_first(app, repo):
    first = make_session(repo, "running", label="input.csv", percent=42)
    second = make_session(repo, owner="bob", kind="monte_carlo")
    lines = ok(app, "sessions", "list").stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "KIND", "OWNER", "LABEL", "PROGRESS", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == [second.id, first.id]
    assert lines[2].split()[1:6] == ["running", "batch", "ana", "input.csv", "42.0%"]
    assert lines[1].split()[1:6] == ["pending", "monte_carlo", "bob", "-", "-"]


def test_list_filters_by_state_owner_kind_and_limit(app, repo):
    running = make_session(repo, "running", owner="ana")
    pending = make_session(repo, owner="bob", kind="monte_carlo")
    newest = make_session(repo, owner="bob")

    def ids(*args):
        return [s["id"] for s in json.loads(ok(app, "sessions", "list", "--json", *args).stdout)]

    assert ids("--state", "running") == [running.id]
    assert ids("--owner", "bob") == [newest.id, pending.id]
    assert ids("--kind", "monte_carlo") == [pending.id]
    assert ids("--limit", "1") == [newest.id]
    assert "no sessions" in ok(app, "sessions", "list", "--state", "failed").stdout


def test_list_json_holds_the_same_dicts_as_the_api(app, repo):
    session = make_session(repo, "completed", tokens=7, percent=10)
    assert json.loads(ok(app, "sessions", "list", "--json").stdout) == [repo.get(session.id).to_dict()]


# -- show -------------------------------------------------------------------------------
def test_show_prints_metadata_usage_result_and_the_last_20_log_lines(app, repo):
    session = make_session(repo, "completed", label="model.bin", logs=25, tokens=1500, percent=50)
    output = ok(app, "sessions", "show", session.id).stdout
    for expected in (session.id, "model.bin", "completed", "50.0%", '"answer": 42', "1,500 tokens",
                     "cost 1.500000", '"engine": "numpy"', "25 entries"):
        assert expected in output
    tail = [line for line in output.splitlines() if " INFO line " in line]
    assert [line.split()[-1] for line in tail] == [str(n) for n in range(6, 26)]
    assert tail[0].split()[0].endswith("Z")


def test_show_names_the_error_of_a_failed_session(app, repo):
    session = make_session(repo, "failed")
    output = ok(app, "sessions", "show", session.id).stdout
    assert "boom" in output and "failed" in output and "0 entries" in output


def test_show_json_holds_the_session_and_its_log_tail(app, repo):
    session = make_session(repo, "running", logs=3)
    shown = json.loads(ok(app, "sessions", "show", session.id, "--json").stdout)
    assert shown["session"] == repo.get(session.id).to_dict()
    assert [e["message"] for e in shown["entries"]] == ["line 1", "line 2", "line 3"]


@pytest.mark.parametrize("session_id", [NO_SUCH_ID, "not-a-uuid"])
def test_show_and_stop_refuse_an_unknown_or_malformed_id(app, session_id):
    for command in ("show", "stop"):
        result = cli(app, "sessions", command, session_id)
        assert result.exit_code == 1 and f"session {session_id} not found" in result.output


# -- stop -------------------------------------------------------------------------------
def test_stop_cancels_a_pending_session_and_logs_who_asked(app, repo):
    session = make_session(repo)
    assert "was pending: stopped" in ok(app, "sessions", "stop", session.id).stdout
    assert repo.get(session.id).state is State.STOPPED
    entry = repo.read_logs(session.id).entries[-1]
    assert entry.message == "stop requested by cli" and entry.level == "warning"


def test_stop_asks_a_running_session_to_stop(app, repo):
    session = make_session(repo, "running")
    assert "is running: stop requested" in ok(app, "sessions", "stop", session.id).stdout
    stored = repo.get(session.id)
    assert stored.state is State.RUNNING and stored.stop_requested
    assert repo.read_logs(session.id).entries[-1].message == "stop requested by cli"


def test_stop_refuses_a_finished_session_naming_its_state(app, repo):
    session = make_session(repo, "completed")
    result = cli(app, "sessions", "stop", session.id)
    assert result.exit_code == 1 and "is completed" in result.output
    assert repo.get(session.id).log_count == 0


def test_stopping_twice_says_the_stop_was_asked_again(app, repo):
    session = make_session(repo, "running")
    ok(app, "sessions", "stop", session.id)
    assert "stop requested again" in ok(app, "sessions", "stop", session.id).stdout
    assert repo.get(session.id).state is State.RUNNING


# -- cleanup ----------------------------------------------------------------------------
@pytest.fixture
def aged(app, repo):
    """Expired finished sessions, a recent one, and a running one created long ago."""
    made = {"old_completed": make_session(repo, "completed", logs=4, tokens=10),
            "old_failed": make_session(repo, "failed", logs=2, tokens=20),
            "recent": make_session(repo, "stopped", logs=1),
            "running": make_session(repo, "running", logs=1, tokens=5)}
    for name in ("old_completed", "old_failed"):
        age(app, made[name].id, created_at=timedelta(days=11), finished_at=timedelta(days=10))
    age(app, made["running"].id, created_at=timedelta(days=30), started_at=timedelta(days=30))
    return {name: session.id for name, session in made.items()}


def test_cleanup_removes_only_expired_finished_sessions_and_keeps_usage(app, repo, aged):
    report = ok(app, "usage", "report", "--json").stdout
    output = ok(app, "sessions", "cleanup", "--older-than", "7d").stdout
    assert "removed 2 sessions and 6 log entries (sessions finished over 7d ago)" in output
    assert not exists(repo, aged["old_completed"]) and not exists(repo, aged["old_failed"])
    assert exists(repo, aged["recent"]) and exists(repo, aged["running"])
    assert ok(app, "usage", "report", "--json").stdout == report
    assert "removed 0 sessions and 0 log entries" in ok(app, "sessions", "cleanup", "--older-than", "7d").stdout


def test_cleanup_dry_run_counts_and_removes_nothing(app, repo, aged):
    output = ok(app, "sessions", "cleanup", "--older-than", "7d", "--dry-run").stdout
    assert "would remove 2 sessions and 6 log entries" in output
    assert all(exists(repo, session_id) for session_id in aged.values())
    counts = json.loads(ok(app, "sessions", "cleanup", "--dry-run", "--json").stdout)
    assert counts == {"sessions": 2, "log_entries": 6, "dry_run": True}
    assert all(exists(repo, session_id) for session_id in aged.values())


def test_cleanup_by_state_removes_only_that_state(app, repo, aged):
    counts = json.loads(ok(app, "sessions", "cleanup", "--older-than", "1d", "--state", "failed", "--json").stdout)
    assert counts == {"sessions": 1, "log_entries": 2, "dry_run": False}
    assert not exists(repo, aged["old_failed"]) and exists(repo, aged["old_completed"])


def test_cleanup_without_older_than_applies_the_retention_settings(app, repo, aged):
    assert "removed 2 sessions" in ok(app, "sessions", "cleanup").stdout       # default 7d
    assert exists(repo, aged["recent"]) and exists(repo, aged["running"])


def test_cleanup_older_than_0s_removes_every_finished_session_and_nothing_live(app, repo, aged):
    """``0s`` is "finished any time before now": the recent stopped session goes too, the
    running one (created a month ago) and a pending one stay; --dry-run only counts."""
    pending = make_session(repo).id
    output = ok(app, "sessions", "cleanup", "--older-than", "0s", "--dry-run").stdout
    assert "would remove 3 sessions and 7 log entries (every finished session)" in output
    assert all(exists(repo, session_id) for session_id in [*aged.values(), pending])
    output = ok(app, "sessions", "cleanup", "--older-than", "0s").stdout
    assert "removed 3 sessions and 7 log entries (every finished session)" in output
    assert [session_id for session_id in [*aged.values(), pending] if exists(repo, session_id)] == [aged["running"], pending]


def test_cleanup_older_than_0s_keeps_to_the_given_state(app, repo, aged):
    counts = json.loads(ok(app, "sessions", "cleanup", "--older-than", "0s", "--state", "stopped", "--json").stdout)
    assert counts == {"sessions": 1, "log_entries": 1, "dry_run": False}
    assert not exists(repo, aged["recent"]) and exists(repo, aged["old_failed"])


def test_cleanup_honours_a_per_state_retention(make_app):
    app = make_app(RUNBOARD_RETENTION_FAILED="30d")
    repo = app.extensions["runboard"]
    completed, failed = make_session(repo, "completed"), make_session(repo, "failed")
    for session in (completed, failed):
        age(app, session.id, finished_at=timedelta(days=10))
    output = ok(app, "sessions", "cleanup").stdout
    assert "removed 1 session and 0 log entries (retention: completed 7d, failed 30d, stopped 7d)" in output
    assert not exists(repo, completed.id) and exists(repo, failed.id)
    output = ok(app, "sessions", "cleanup", "--state", "failed").stdout
    assert "removed 0 sessions and 0 log entries (failed sessions finished over 30d ago)" in output


# -- sweep ------------------------------------------------------------------------------
def test_sweep_fails_running_sessions_whose_heartbeat_is_stale(make_app):
    app = make_app(RUNBOARD_HEARTBEAT_TIMEOUT="60s")
    repo = app.extensions["runboard"]
    stale, fresh = make_session(repo, "running"), make_session(repo, "running")
    age(app, stale.id, heartbeat_at=timedelta(minutes=2))
    output = ok(app, "sessions", "sweep").stdout
    assert f"{stale.id} failed: heartbeat lost" in output and "failed 1 session" in output
    assert repo.get(stale.id).state is State.FAILED and repo.get(stale.id).error == "heartbeat lost"
    assert repo.get(fresh.id).state is State.RUNNING
    assert "no running session has lost its heartbeat" in ok(app, "sessions", "sweep").stdout


def test_sweep_takes_a_timeout_and_prints_json(app, repo):
    session = make_session(repo, "running")
    age(app, session.id, heartbeat_at=timedelta(seconds=5))
    assert json.loads(ok(app, "sessions", "sweep", "--timeout", "1h", "--json").stdout) == {"failed": []}
    assert json.loads(ok(app, "sessions", "sweep", "--timeout", "1s", "--json").stdout) == {"failed": [session.id]}


# -- usage ------------------------------------------------------------------------------
def test_usage_report_sums_rollups_by_owner_kind_or_engine(app, repo):
    make_session(repo, "completed", owner="ana", tokens=1000)
    make_session(repo, "running", owner="ana", kind="monte_carlo", tokens=500)
    make_session(repo, "completed", owner="bob", tokens=250, engine="torch")
    lines = ok(app, "usage", "report").stdout.splitlines()
    assert lines[0].split() == ["OWNER", "SESSIONS", "TOKENS", "COST"]
    assert [line.split() for line in lines[1:]] == [["ana", "2", "1,500", "1.500000"],
                                                    ["bob", "1", "250", "0.250000"]]
    by_kind = json.loads(ok(app, "usage", "report", "--by", "kind", "--json").stdout)
    assert by_kind == [{"key": "batch", "sessions": 2, "tokens": 1250, "cost": 1.25},
                       {"key": "monte_carlo", "sessions": 1, "tokens": 500, "cost": 0.5}]
    by_engine = json.loads(ok(app, "usage", "report", "--by", "engine", "--since", "7d", "--json").stdout)
    assert [(r["key"], r["tokens"]) for r in by_engine] == [("numpy", 1500), ("torch", 250)]


@pytest.mark.parametrize("since, shown", [("2999-01-01", "2999-01-01T00:00:00"),
                                          ("2999-01-01T09:30:00Z", "2999-01-01T09:30:00"),
                                          ("2999-01-01T09:30", "2999-01-01T09:30:00"),
                                          ("2999-01-01T00:00:00+02:00", "2998-12-31T22:00:00")])
def test_usage_report_since_a_date_or_time_leaves_out_earlier_rollups(app, repo, since, shown):
    make_session(repo, "completed", tokens=10)
    assert f"no usage recorded since {shown}.000000Z" in ok(app, "usage", "report", "--since", since).stdout
    assert json.loads(ok(app, "usage", "report", "--since", since, "--json").stdout) == []
    assert json.loads(ok(app, "usage", "report", "--since", "2000-01-01", "--json").stdout)[0]["tokens"] == 10


# -- bad input, memory://, help --------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["sessions", "list", "--state", "bogus"], "Invalid value for '--state'"),
    (["sessions", "list", "--limit", "0"], "0 is not in the range 1<=x<=200"),
    (["sessions", "list", "--limit", "201"], "201 is not in the range"),
    (["sessions", "cleanup", "--older-than", "7 days"], "malformed duration '7 days'"),
    (["sessions", "sweep", "--timeout", "0s"], "Invalid value for '--timeout': must be longer than 0s"),
    (["usage", "report", "--since", "0s"], "is neither a duration"),
    (["sessions", "cleanup", "--older-than", "99999999999d"], "Invalid value for '--older-than': must be at most 36500d"),
    (["sessions", "sweep", "--timeout", "36501d"], "at most 36500d"),
    (["sessions", "cleanup", "--state", "running"], "finished sessions only (completed, failed, stopped), not running"),
    (["sessions", "cleanup", "--state", "bogus"], "Invalid value for '--state'"),
    (["sessions", "sweep", "--timeout", "7 days"], "Invalid value for '--timeout': malformed duration"),
    (["sessions", "show"], "Missing argument 'SESSION_ID'"),
    (["usage", "report", "--by", "host"], "Invalid value for '--by'"),
    (["usage", "report", "--since", "last week"], "is neither a duration (7d), a date (2026-11-01)"),
    (["usage", "report", "--since", "99999999999d"], "is neither a duration"),
])
def test_bad_arguments_are_clear_errors(app, args, message):
    result = cli(app, *args)
    assert result.exit_code == 2 and message in result.output


COMMANDS = [["sessions", "list"], ["sessions", "show", NO_SUCH_ID], ["sessions", "stop", NO_SUCH_ID],
            ["sessions", "cleanup"], ["sessions", "sweep"], ["usage", "report"]]


@pytest.fixture(scope="module")
def memory_app():
    app = create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off", "TESTING": True})
    yield app
    close_repository(app)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_every_command_explains_that_it_needs_a_sql_store(memory_app, args):
    result = cli(memory_app, *args)
    assert result.exit_code == 1 and "this command needs a SQL store" in result.output


@pytest.mark.parametrize("args", [c[:2] for c in COMMANDS] + [["sessions"], ["usage"]], ids=" ".join)
def test_every_command_has_help_even_on_the_memory_store(memory_app, args):
    result = cli(memory_app, *args, "--help")
    usage_line = result.output.splitlines()[0]
    assert result.exit_code == 0 and usage_line.startswith("Usage: ") and f" {' '.join(args)} [OPTIONS]" in usage_line
