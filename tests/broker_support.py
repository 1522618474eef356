"""The machine's real brokers for Celery tests: Redis at 127.0.0.1:6379 and RabbitMQ at
127.0.0.1:5672 (guest/guest).

Each test run gets its own Redis database number and its own queue names, so two runs on
one machine never take each other's tasks.  Under ``CI=true`` a broker that does not answer
fails the test; elsewhere it is skipped with the reason.
"""
from __future__ import annotations

import os
import socket
import uuid

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
RUN_TAG = uuid.uuid4().hex[:10]
#: Databases 1-15 (0 is the default everyone else uses), chosen once per test run.
REDIS_DB = 1 + int(RUN_TAG, 16) % 15


def redis_url() -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"


def rabbit_url() -> str:
    return f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}//"


def broker_url(name: str) -> str:
    """``redis`` or ``rabbitmq``: the broker's URL, once it is known to answer."""
    host, port, url = ((REDIS_HOST, REDIS_PORT, redis_url()) if name == "redis"
                       else (RABBIT_HOST, RABBIT_PORT, rabbit_url()))
    require(host, port, name)
    return url


def queue_name(prefix: str = "runboard") -> str:
    """A queue no other test run (nor test) uses."""
    return f"{prefix}-test-{RUN_TAG}-{uuid.uuid4().hex[:6]}"


def require(host: str, port: int, name: str) -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        message = f"{name} at {host}:{port} is not reachable ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port_url(scheme: str, *, password: str) -> str:
    """A broker URL where nothing listens: every publish to it fails."""
    from gunicorn_support import free_port

    port = free_port()
    return (f"redis://:{password}@127.0.0.1:{port}/0" if scheme == "redis"
            else f"amqp://guest:{password}@127.0.0.1:{port}//")
