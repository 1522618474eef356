"""In-app scheduler (SPEC §8): the heartbeat sweep and retention cleanup on APScheduler.

Every process may run a scheduler (each gunicorn worker, each host); ticks are aligned to
the wall clock, so all of them fire for the same tick number, and the store decides who
runs it (``claim_tick``): the holder of one lease, renewed by each tick it runs, and only
once per tick.  If the holder dies, its lease expires and another process takes over.  The
sweeps themselves are idempotent, so even a tick run twice would change nothing twice.

Started by gunicorn's worker hook when ``RUNBOARD_SCHEDULER=on``; never in CLI commands
or tests unless they call ``start()``.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from repositories import SessionRepository

from .retention import apply_retention
from .settings import Settings
from .sweeps import sweep_lost

log = logging.getLogger("runboard.scheduler")
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: The lease outlives a few missed sweep ticks, so a slow tick does not hand it over.
LEASE_TICKS = 2.5


class Scheduler:
    def __init__(self, repository: SessionRepository, settings: Settings, holder: str, kinds: tuple[str, ...] = ()):
        """``kinds``: the registered kinds, whose queued sessions the sweep watches."""
        self.repository, self.settings, self.holder, self.kinds = repository, settings, holder, kinds
        self.jobs: dict[str, tuple[float, Callable[[], object]]] = {
            "sweep": (settings.sweep_interval.total_seconds(), self.sweep),
            "cleanup": (settings.cleanup_interval.total_seconds(), self.cleanup),
        }
        shortest = min(interval for interval, _ in self.jobs.values())
        self.lease = timedelta(seconds=shortest * LEASE_TICKS)
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        if self._scheduler is not None:
            return
        self._scheduler = BackgroundScheduler(
            timezone=timezone.utc, executors={"default": {"type": "threadpool", "max_workers": 1}},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        for name, (interval, _) in self.jobs.items():
            self._scheduler.add_job(self.tick, IntervalTrigger(seconds=interval, start_date=EPOCH),
                                    args=[name], id=name, name=f"runboard {name}")
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def tick(self, name: str, now: float | None = None) -> bool:
        """Run ``name`` for the current tick if the store says this process should."""
        interval, work = self.jobs[name]
        number = int(((now or time.time()) - EPOCH.timestamp()) // interval)
        try:
            if not self.repository.claim_tick(name, number, holder=self.holder, lease=self.lease):
                return False
            log.info("%s tick %d runs in %s", name, number, self.holder)
            work()
            return True
        except Exception:                       # noqa: BLE001 - a failed tick must not stop the next
            log.exception("scheduled %s failed", name)
            return False

    def sweep(self) -> list[str]:
        swept = sweep_lost(self.repository, self.settings, self.kinds)
        if swept.heartbeat_lost:
            log.warning("heartbeat lost: failed %d session(s): %s", len(swept.heartbeat_lost),
                        ", ".join(swept.heartbeat_lost))
        if swept.runner_lost:
            log.warning("runner lost: failed %d queued session(s): %s", len(swept.runner_lost),
                        ", ".join(swept.runner_lost))
        return swept.heartbeat_lost + swept.runner_lost

    def cleanup(self):
        counts = apply_retention(self.repository, self.settings)
        if counts.sessions:
            log.info("retention removed %d session(s) and %d log entries", counts.sessions, counts.log_entries)
        return counts
