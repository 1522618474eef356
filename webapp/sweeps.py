"""The heartbeat sweep (SPEC §1, §5): sessions whose runner is gone are failed, not left
to wait for ever.  Used by the scheduler and by ``flask sessions sweep``.

Two kinds of loss: a ``running`` session nobody has reported for within the heartbeat
timeout ("heartbeat lost": its process or Celery worker died), and — with the ``threads``
executor only — a ``pending`` session of a registered kind whose queuing process stopped
heartbeating it ("runner lost": the queue died with the process).  With the ``celery``
executor a pending session waits in the broker, which outlives every process, so it is
left alone.
"""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Iterable

from repositories import SessionRepository

from .settings import Settings


@dataclasses.dataclass(frozen=True)
class Swept:
    heartbeat_lost: list[str]
    runner_lost: list[str]


def sweep_lost(repository: SessionRepository, settings: Settings, kinds: Iterable[str],
               timeout: timedelta | None = None) -> Swept:
    """Fail the sessions whose runner is gone; ``timeout`` defaults to RUNBOARD_HEARTBEAT_TIMEOUT."""
    timeout = timeout or settings.heartbeat_timeout
    queued = repository.sweep_queued(timeout, kinds) if settings.executor == "threads" else []
    return Swept(repository.sweep_heartbeats(timeout), queued)
