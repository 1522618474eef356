"""A task's own ``logging`` records, to the log of the session of the thread that logged them."""
from __future__ import annotations

import logging
import threading

from .. import _current_run
from ..handler import OWN_LOGGERS, extra_fields, level_of, message_of

#: Loggers of Celery's own machinery, left out of a session's log like the client's own;
#: ``celery.redirected`` (a task's ``print`` under the worker's stdout redirection) is kept.
MACHINERY = ("celery", "kombu", "amqp", "billiard", "vine") + OWN_LOGGERS
KEPT = ("celery.redirected",)
CELERY_FIELDS = ("task_id", "task_name")


class Router(logging.Handler):
    """One handler per process, on the root logger and on ``celery.task`` (which
    ``get_task_logger`` loggers reach and which does not propagate): a record goes to the
    run of the thread that logged it, if any, turned into an entry as ``LogHandler`` does."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._local = threading.local()

    def handle(self, record: logging.LogRecord):
        """No handler lock: ``Run.log`` is thread-safe, and one run's back-pressure must not
        hold up every thread's logging."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        run = _current_run.get()
        if run is None or run.state is not None:
            return
        name = record.name
        if name.split(".", 1)[0] in MACHINERY and not name.startswith(KEPT):
            return
        local = self._local
        if getattr(local, "busy", False) or getattr(local, "last", None) is record:
            return                             # reentered (an error printed to stdout), or seen on the other logger
        local.busy, local.last = True, record
        try:
            message = message_of(record)
            fields = extra_fields(record)
            for name in CELERY_FIELDS:         # Celery's TaskFormatter adds them; the session is the task
                fields.pop(name, None)
            run.log(level_of(record.levelno), message, **fields)
        except Exception:                      # noqa: BLE001 - logging must never break the task
            self.handleError(record)
        finally:
            local.busy = False


router = Router()


def route_logging() -> None:
    for logger in (logging.getLogger(), logging.getLogger("celery.task")):
        if router not in logger.handlers:
            logger.addHandler(router)

