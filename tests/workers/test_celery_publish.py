"""The Celery executor's web side in process: a publish the broker refuses fails the
session at once, with a reason that never shows the broker's password; the executor's
configuration is what long jobs need; and start-up refuses what cannot work."""
from __future__ import annotations

import pytest

from broker_support import free_port_url
from repositories.errors import ConfigurationError
from webapp import create_app
from webapp.runner import RUNNER_KEY
from webapp.store import close_repository

TOKEN = "celery-publish-test-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def celery_app_on(tmp_path, broker: str):
    app = create_app({"RUNBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'runboard.db'}", "RUNBOARD_SCHEDULER": "off",
                      "RUNBOARD_ADMIN_TOKEN": TOKEN, "RUNBOARD_EXECUTOR": "celery",
                      "RUNBOARD_CELERY_BROKER_URL": broker, "TESTING": True})
    app.extensions["runboard"].create_schema()
    return app


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_a_publish_the_broker_refuses_fails_the_session_saying_why(tmp_path, scheme):
    app = celery_app_on(tmp_path, free_port_url(scheme, password="s3cret-broker-pw"))
    try:
        client = app.test_client()
        created = client.post("/api/v1/sessions", json={"kind": "monte_carlo", "params": {"iterations": 10}},
                              headers=AUTH)
        assert created.status_code == 201, created.json
        session = client.get(f"/api/v1/sessions/{created.json['id']}", headers=AUTH).json
        assert session["state"] == "failed", session
        assert session["error"].startswith("could not queue the job on the Celery broker ("), session
        assert "s3cret-broker-pw" not in session["error"]
    finally:
        close_repository(app)


def test_the_celery_app_is_configured_for_long_jobs(tmp_path):
    app = celery_app_on(tmp_path, "redis://127.0.0.1:6379/0")
    try:
        executor = app.extensions[RUNNER_KEY]
        conf = executor.celery.conf
        assert conf.task_acks_late and conf.task_reject_on_worker_lost
        assert conf.worker_prefetch_multiplier == 1 and conf.task_ignore_result
        assert conf.task_default_queue == "runboard"
        assert "runboard.run_session" in executor.celery.tasks
        assert executor.notify_stop("any") is False    # a stop travels through the store
    finally:
        close_repository(app)


@pytest.mark.parametrize("settings, variable", [
    ({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"},
     "RUNBOARD_EXECUTOR"),
    ({}, "RUNBOARD_CELERY_BROKER_URL"),
])
def test_the_celery_executor_refuses_what_cannot_work(tmp_path, settings, variable):
    config = {"RUNBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "RUNBOARD_EXECUTOR": "celery", **settings}
    with pytest.raises(ConfigurationError) as refused:
        create_app(config)
    assert str(refused.value).startswith(f"{variable}:") and "\n" not in str(refused.value)


def test_a_task_whose_store_is_unreachable_runs_again_later(tmp_path, monkeypatch):
    """Acknowledging it would strand its session ``pending``: Celery retries it instead."""
    from sqlalchemy.exc import OperationalError

    app = celery_app_on(tmp_path, "redis://127.0.0.1:6379/0")
    try:
        executor = app.extensions[RUNNER_KEY]
        session = app.extensions["runboard"].create(kind="monte_carlo", owner="o", params={"iterations": 10})

        def unreachable(session_id):
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        monkeypatch.setattr(executor.repository, "get", unreachable)
        retried = []

        class Retry(Exception):
            pass

        def retry(**options):
            retried.append(options)
            return Retry()
        monkeypatch.setattr(executor.task, "retry", retry)
        with pytest.raises(Retry):
            executor.task.run(session.id)
        assert retried == [{"countdown": 5, "max_retries": None}]
        monkeypatch.undo()
        assert app.extensions["runboard"].get(session.id).state.value == "pending"
    finally:
        close_repository(app)
