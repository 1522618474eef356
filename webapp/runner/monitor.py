"""The runner's one background thread.

Every ``tick`` it flushes jobs whose buffers are due (a job busy in a long computation
never blocks its own tracking), and for jobs that wrote nothing recently it reads the
session to learn of stop requests made in *other* processes — the flag travels through
the store.  It heartbeats each job, the sessions still queued here and the process itself, and
finalizes jobs that ignore a stop request for longer than the grace period.

While the store is unreachable the monitor leaves a job alone until its context's backoff
ends (the context retries on that schedule), and a failed read or worker heartbeat is
logged and tried again later: the monitor outlives any store failure.
"""
from __future__ import annotations

import logging
import threading
import time

from repositories.errors import SessionNotFound

from .identity import rss_bytes
from .retry import describe, is_store_failure

log = logging.getLogger("runboard.runner")


class Monitor(threading.Thread):
    def __init__(self, runner, tick: float = 0.1, stop_poll: float = 0.25):
        super().__init__(name="runboard-runner-monitor", daemon=True)
        self.runner, self.tick, self.stop_poll = runner, tick, stop_poll
        self._halt = threading.Event()
        self._last_registry = 0.0
        self._last_poll: dict[str, float] = {}

    def stop(self, timeout: float = 5.0) -> None:
        """Halt, and wait for a pass under way: the store's connections are released right
        after, and a write still running then would open one nobody closes."""
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def run(self) -> None:
        while not self._halt.wait(self.tick):
            try:
                self.look_once()
            except Exception:                  # noqa: BLE001 - keep watching; the store may be back
                log.exception("runner monitor pass failed")

    def look_once(self) -> None:
        runner, now = self.runner, time.monotonic()
        for context in runner.active():
            if context.abandoned or context.backing_off():
                continue
            if context.due():
                context.flush()
            elif context.idle_for() >= runner.heartbeat_interval:
                context.flush(heartbeat=True)
            elif not context.stop_requested and now - self._last_poll.get(context.session_id, 0) >= self.stop_poll:
                self._last_poll[context.session_id] = now
                self._read_stop_flag(context)
        for context in runner.overdue():
            runner.give_up_on(context, f"stopped: the job did not acknowledge the stop request "
                                       f"within {runner.stop_grace:g}s", runner.deadline())
        active = {c.session_id for c in runner.active()}
        self._last_poll = {k: v for k, v in self._last_poll.items() if k in active}
        if now - self._last_registry >= runner.heartbeat_interval:
            self._last_registry = now
            self.register(len(active))
            self.touch_queued()

    def _read_stop_flag(self, context) -> None:
        try:
            session = self.runner.repository.get(context.session_id)
        except SessionNotFound:
            context.abandon()
            return
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            context.store_failed(exc)          # the job's writes would fail too: back off
            return
        if session.state.is_terminal:
            context.abandon()                  # finalized elsewhere, e.g. by the sweeper
        elif session.stop_requested:
            self.runner.ask_to_stop(context, "stop requested")

    def register(self, active: int) -> None:
        if not self.runner.registers:
            return
        identity = self.runner.identity
        try:
            self.runner.repository.heartbeat_worker(
                worker_id=identity.worker_id, host=identity.host, pid=identity.pid, active=active,
                rss_bytes=rss_bytes(), version=identity.version)
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            log.warning("runner could not record its worker heartbeat (%s); next time", describe(exc))

    def touch_queued(self) -> None:
        """Heartbeat the sessions queued here and not yet started: the sweep fails those of
        a process that died ("runner lost") once nobody touches them."""
        queued = self.runner.queued()
        if not queued:
            return
        try:
            self.runner.repository.touch_queued(queued)
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            log.warning("runner could not heartbeat its queued sessions (%s); next time", describe(exc))
