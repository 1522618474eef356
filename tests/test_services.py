"""webapp.services: the stop sequence and registered runs, written once for the API, the
panel and the CLI (each of which is tested through its own interface elsewhere)."""
from __future__ import annotations

import importlib

import pytest

from job_support import idle_kind, paused_runner
from repositories.errors import InvalidTransition, SessionNotFound, ValidationError
from repositories.states import State
from webapp import create_app, services
from webapp.runner import get_runner
from webapp.store import close_repository

NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def app():
    app = create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off",
                      "RUNBOARD_MAX_LOG_ENTRIES": "1", "TESTING": True})
    runner = paused_runner(app)
    runner.kinds.register(idle_kind("idle"))
    runner.notified = []
    runner.notify_stop = lambda session_id: runner.notified.append(session_id) or False
    with app.app_context():
        yield app
    close_repository(app)


@pytest.fixture
def repo(app):
    return app.extensions["runboard"]


def test_stopping_a_pending_session_logs_who_asked_and_cancels_it(repo):
    session = repo.create(kind="batch", owner="ana")
    stopped = services.stop_session(session.id, who="ana@example.com", role="user")
    assert stopped.state is State.STOPPED and stopped == repo.get(session.id)
    assert get_runner().notified == [session.id]
    entry = repo.read_logs(session.id).entries[-1]
    assert (entry.level, entry.message) == ("warning", "stop requested by ana@example.com")
    assert entry.fields == {"by": "ana@example.com", "role": "user"}


def test_stopping_a_running_session_flags_it_and_tells_this_processs_runner(app, repo):
    session = repo.start(repo.create(kind="batch", owner="ana").id)
    flagged = services.stop_session(session.id, who="cli", role="admin")
    assert flagged.state is State.RUNNING and flagged.stop_requested
    assert get_runner().notified == [session.id]


def test_a_finished_or_unknown_session_raises_the_domain_error_and_logs_nothing(repo):
    done = repo.finish(repo.start(repo.create(kind="batch", owner="ana").id).id, State.COMPLETED)
    with pytest.raises(InvalidTransition) as refused:
        services.stop_session(done.id, who="root", role="admin")
    assert refused.value.current is State.COMPLETED and repo.get(done.id).log_count == 0
    with pytest.raises(SessionNotFound):
        services.stop_session(NO_SUCH_ID, who="root", role="admin")
    assert get_runner().notified == []


def test_a_full_log_never_blocks_a_stop(repo):
    session = repo.start(repo.create(kind="batch", owner="ana").id)
    repo.append_logs(session.id, [{"level": "info", "message": "fills the one-entry log"}])
    assert services.stop_session(session.id, who="root", role="admin").stop_requested
    assert repo.get(session.id).log_count == 1


def test_a_registered_run_is_validated_stored_and_queued(repo):
    session = services.start_registered_run("idle", owner="ana", label="x", params={"n": 1})
    assert repo.get(session.id).state is State.PENDING and get_runner().submitted == [session.id]
    with pytest.raises(ValidationError, match="unknown kind"):
        services.start_registered_run("nope", owner="ana")


@pytest.mark.parametrize("module", ["webapp.api.sessions", "webapp.admin.detail", "webapp.cli.sessions"])
def test_no_caller_keeps_its_own_copy_of_the_stop_sequence(module):
    source = importlib.import_module(module).__loader__.get_source(module)
    assert "services" in source and "record_stop_request" not in source
    assert "notify_stop" not in source and ".request_stop(" not in source
