"""Celery fixtures: per module and per (store, broker), one real gunicorn with the Celery
executor and a pool of real Celery workers on the run's own queue."""
from __future__ import annotations

import pytest

from broker_support import broker_url, queue_name
from celery_worker_support import Workers, celery_env
from gunicorn_support import Server

DEPLOYMENTS = [("sqlite", "redis"), ("postgresql", "rabbitmq")]


@pytest.fixture(scope="module", params=DEPLOYMENTS, ids=["sqlite-redis", "postgresql-rabbitmq"])
def deployment(request, tmp_path_factory):
    store, broker = request.param
    workdir = tmp_path_factory.mktemp(f"celery-{store}")
    url = (f"sqlite:///{workdir / 'runboard.db'}" if store == "sqlite"
           else request.getfixturevalue("module_postgres_url"))
    # The sweep runs in the web app every second: a killed worker's job is failed quickly.
    env = celery_env({}, broker_url(broker), queue_name(), RUNBOARD_SCHEDULER="on", RUNBOARD_SWEEP_INTERVAL="1s")
    server = Server(url, workdir, "web", workers=2, env=env)
    server.migrate()
    workers = Workers(server, workdir)
    with server.serving():
        try:
            yield workers
        finally:
            workers.stop_all()
