"""Celery's signals, each moving a task's session on: the pool process's (prerun, success,
failure, retry, postrun) and the main process's (received, revoked, a child's failure)."""
from __future__ import annotations

import logging
import sys

from celery import signals
from celery import states as celery_states

from .. import _current_run
from . import process
from .results import error_of, result_of, traceback_of
from .routing import route_logging
from .sessions import LABEL_HEADER, OWNER_HEADER, detach, fail, header, open_run, reopen

log = logging.getLogger("runboard")


def _on_prerun(sender=None, task_id=None, task=None, **_):
    task = task or sender
    tracking = process.tracking_of(task)
    if tracking is None:
        return
    request = task.request
    if getattr(request, "is_eager", False) or task_id is None:
        return                                 # apply() / task_always_eager: not a worker's run
    try:
        client = tracking.client()
    except Exception as exc:                   # noqa: BLE001 - never in the task's way
        if tracking.broken is None:
            tracking.broken = str(exc)
            log.error("runboard: the tasks of this process are not tracked: %s", exc)
        return
    route_logging()
    run = open_run(client, task.name, request, getattr(request, "hostname", None) or None)
    with process.lock:
        process.open_runs[task_id] = (run, _current_run.get())
    _current_run.set(run)


def _on_success(sender=None, result=None, **_):
    run = process.local_run(getattr(sender.request, "id", None)) if sender is not None else None
    if run is not None and run.state is None:
        run.finish("stopped" if run.stop_seen else "completed", result=result_of(result))


def _on_failure(sender=None, task_id=None, exception=None, traceback=None, einfo=None, **_):
    tracking = process.tracking_of(sender)
    if tracking is None or tracking.broken or task_id is None or getattr(sender.request, "is_eager", False):
        return
    run = process.local_run(task_id)
    if run is not None:
        if run.state is None:
            fail(run, exception, traceback, einfo)
        return
    # Not running in this process: the main process after the task's child died or was
    # killed at its hard time limit (reported once: a hard time limit sends this signal
    # for TimeLimitExceeded, then again when the killed child is found gone).
    with process.lock:
        source = process.received.get(task_id)
        if source is None:
            source = process.received[task_id] = {"id": task_id}
        if source.get("reported"):
            return
        source["reported"] = True
    text = traceback_of(exception, traceback, einfo)

    def report() -> None:
        run = reopen(tracking.client(), sender.name, source)
        run.log("error", text)
        run.finish("failed", error=error_of(exception))
    process.in_background(report, f"the failure of task {task_id}")


def _on_retry(sender=None, request=None, reason=None, einfo=None, **_):
    run = process.local_run(getattr(request, "id", None))
    if run is None or run.state is not None:
        return
    retries = (getattr(request, "retries", 0) or 0) + 1
    run.log("warning", f"retry {retries}: {reason}" if reason is not None else f"retry {retries}", retry=retries)


def _on_postrun(sender=None, task_id=None, task=None, retval=None, state=None, **_):
    with process.lock:
        entry = process.open_runs.pop(task_id, None) if task_id is not None else None
    if entry is None:
        return
    run, before = entry
    _current_run.set(before)
    if run.state is not None:
        return
    if state == celery_states.RETRY or (state == celery_states.REJECTED and getattr(retval, "requeue", False)):
        if state == celery_states.REJECTED:
            run.log("warning", f"rejected and requeued: {retval}")
        detach(run)
    elif state == celery_states.IGNORED:
        run.log("info", f"the task raised Ignore ({retval})" if str(retval or "") else "the task raised Ignore")
        run.finish("stopped" if run.stop_seen else "completed")
    elif state == celery_states.SUCCESS:
        run.finish("stopped" if run.stop_seen else "completed", result=result_of(retval))
    elif state is None and _terminating():
        # The pool process is being terminated (a revoke with terminate=True, a cold
        # shutdown): the task did not fail.  Deliver what it reported, once, and leave the
        # session to the main process (task_revoked: stopped), a redelivery, or the sweep.
        run.release(wait=False)
    else:                                      # FAILURE without task_failure, REJECTED, a BaseException
        exception = retval if isinstance(retval, BaseException) else sys.exc_info()[1]
        fail(run, exception)


def _terminating() -> bool:
    """This pool process got its terminate signal (billiard's handler raised SystemExit)."""
    try:
        from billiard import common
    except ImportError:
        return False
    fired = getattr(common, "terminate_handler_fired", None)
    if fired is not None:
        return bool(fired())
    flag = getattr(common, "_should_have_exited", None)
    return bool(flag and flag[0])


def _on_revoked(sender=None, request=None, terminated=False, signum=None, expired=False, **_):
    tracking = process.tracking_of(sender)
    if tracking is None or request is None or request.get("id") is None:
        return
    task_id = request.get("id")
    if expired:
        why = "expired"
    elif terminated:
        why = f"revoked and terminated (signal {signum})" if signum else "revoked and terminated"
    else:
        why = "revoked"
    run = process.local_run(task_id)              # running in this process (threads, solo pool)
    with process.lock:
        source = process.received.get(task_id)
        if source is not None and source.get("reported"):
            return
        process.received[task_id] = {**(source or {}), "reported": True}

    def report() -> None:
        target = run if run is not None else reopen(tracking.client(), sender.name, request)
        target.request_stop(why)
        target.log("warning", f"task {why}")
        target.finish("stopped")
    process.in_background(report, f"the revocation of task {task_id}")


def _on_received(sender=None, request=None, **_):
    """The main process keeps each task's identity, to report it if its child dies."""
    task = getattr(request, "task", None)
    if process.tracking_of(task) is None:
        return
    headers = getattr(request, "request_dict", None) or {}
    identity = {"id": request.id, "replaced_task_nesting": headers.get("replaced_task_nesting")}
    for name in (LABEL_HEADER, OWNER_HEADER):
        identity[name] = header(headers, name)
    with process.lock:
        process.received[request.id] = identity
        while len(process.received) > process.RECEIVED_KEPT:
            process.received.popitem(last=False)


def _on_process_shutdown(**_):
    """A pool process ends (children exit without running atexit): deliver what is left."""
    for tracking in list(process.trackings.values()):
        try:
            tracking.close_here()
        except Exception:                      # noqa: BLE001
            log.exception("runboard: closing the client failed")


RECEIVERS = (
    (signals.task_prerun, _on_prerun),
    (signals.task_success, _on_success),
    (signals.task_failure, _on_failure),
    (signals.task_retry, _on_retry),
    (signals.task_postrun, _on_postrun),
    (signals.task_revoked, _on_revoked),
    (signals.task_received, _on_received),
    (signals.worker_process_shutdown, _on_process_shutdown),
)