"""Every task a Celery application's workers run, as a Runboard session, without changing
the tasks.

    from runboard.celery import track_tasks
    track_tasks(app)                    # where the Celery app is made; the worker imports it

Celery's signals drive the session through the HTTP ``Client``:

* ``task_prerun`` creates and starts it (kind: the task's name, label: the task id or the
  ``runboard_label`` header, owner: the ``runboard_owner`` header or the token's owner,
  ``worker_id``: the worker's hostname), makes it ``runboard.current_run()`` for the
  thread running the task and routes that thread's ``logging`` records to its log;
* ``task_success`` finishes it ``completed`` with the return value, ``task_failure``
  ``failed`` with the exception's summary (its traceback goes to the log);
* ``task_retry`` logs a warning and leaves it running: the creation's idempotency key is
  derived from the task id, so the next attempt, in whatever process, reports on the same
  session;
* ``task_revoked`` (the worker's main process: a terminated task, or one revoked or expired
  before it ran) finishes it ``stopped``, re-creating it from the same key when this
  process never had it.  The main process also reports a task whose child process died
  or was killed at its hard time limit (``task_failure`` with ``WorkerLostError`` or
  ``TimeLimitExceeded``) the same way.

One ``Client`` per process (Celery's prefork pool forks children, and a client's sender
thread and connections do not survive a fork), made at the first task.
"""
from __future__ import annotations

from typing import Iterable, Optional

from . import process
from .process import ClientSource, Tracking
from .receivers import RECEIVERS
from .sessions import kind_of

__all__ = ["track_tasks", "kind_of"]


def track_tasks(celery_app, client: ClientSource = None, *, include: Optional[Iterable[str]] = None,
                exclude: Optional[Iterable[str]] = None) -> None:
    """Make every task ``celery_app``'s workers run a Runboard session.

    ``client``: None for ``Client()`` from ``RUNBOARD_URL``/``RUNBOARD_TOKEN``, made in each
    worker process at its first task; a ``Client`` (used in the process that called
    ``track_tasks``; forked children each get a copy with the same URL, token and
    settings); or a function returning a ``Client``, called once per process.
    ``include``/``exclude``: task names or ``fnmatch`` patterns to track only / to skip
    (``celery.*``, Celery's own tasks, are skipped unless ``include`` names them).
    Calling it again for the same app replaces its settings; signals connect once."""
    with process.lock:
        tracking = process.trackings.get(id(celery_app))
        if tracking is None:
            process.trackings[id(celery_app)] = Tracking(celery_app, client, include, exclude)
        else:
            tracking.configure(client, include, exclude)
    for signal, receiver in RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"runboard.celery.{receiver.__name__}")


