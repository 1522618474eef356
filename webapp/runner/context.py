"""The runner's side of the reporting core: the repository as the transport.

``runboard.reporting.Reporter`` (in the client package) holds the buffers, the patch
composition, back-pressure and retries; the runner and the HTTP client share it.  Here
it gets the repository as its transport and the store's own checks, so a job's bad
input raises in the job (as a ``ValidationError``) instead of failing a later write.

A store error that is not an answer about the session (``retry.is_store_failure``: a
database restart, a lost connection) is a ``RetryLater``: the batch stays first in the
outbox and is written again after the backoff; the job's calls never raise because of it.
"""
from __future__ import annotations

import logging
from typing import Any

from repositories import SessionRepository
from repositories import validation as check
from repositories.base import DEFAULT_MAX_LOG_ENTRIES
from repositories.errors import InvalidTransition, LogLimitExceeded, SessionNotFound
from repositories.records import LogInput, utcnow
from runboard.reporting import Reporter
from runboard.transport import LOG_BATCH, LogsFull, Op, RetryLater, SessionGone, Transport, fit_message

from .retry import describe, is_store_failure

__all__ = ["LOG_BATCH", "RunContext", "fit_message"]
log = logging.getLogger("runboard.runner")


class StoreTransport(Transport):
    """Ops written straight to the repository, each in the store's one transaction."""

    def __init__(self, repository: SessionRepository):
        self.repository = repository

    def send(self, session_id: str, op: Op) -> Any:
        try:
            if op.kind == "logs":
                return self.repository.append_logs(session_id, op.payload).last_seq
            return self.repository.report_progress(session_id, **op.payload).stop_requested
        except LogLimitExceeded as exc:
            raise LogsFull(exc.stored, exc.cap) from exc
        except (InvalidTransition, SessionNotFound) as exc:
            raise SessionGone(str(exc)) from exc
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            raise RetryLater(describe(exc)) from exc


class RunContext(Reporter):
    """The ``JobContext`` the runner hands a job (see ``webapp.runner.kinds``)."""

    logger = log
    peer = "store"

    def __init__(self, repository: SessionRepository, session_id: str, *, flush_interval: float = 0.25,
                 max_buffered_logs: int = 10 * LOG_BATCH, max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES):
        super().__init__(StoreTransport(repository), session_id, flush_interval=flush_interval,
                         max_buffered_logs=max_buffered_logs, max_log_entries=max_log_entries)

    def make_entry(self, level: str, message: str, fields: dict) -> LogInput:
        return check.check_log_batch([LogInput(level, fit_message(str(message)), fields, utcnow())])[0]

    def check_patch(self, field: str, fields: dict) -> None:
        check.check_object(field, fields)

    def check_usage(self, tokens: int, cost: float) -> None:
        check.check_usage({"tokens": tokens, "cost": cost})

    def store_failed(self, exc: Exception) -> None:
        """The monitor's read failed too: the job's writes would, so back off."""
        self._failed(RetryLater(describe(exc)))

    def final_flush(self, deadline: float) -> bool:
        if super().final_flush(deadline):
            return True
        log.error("session %s: gave up on its last reports, the store stayed unreachable; %d log entries "
                  "(and any pending progress, meta or usage) were not stored",
                  self.session_id, self.pending_log_entries())
        return False
