"""A task's session: its kind, identity and idempotency key, opened by the task's process
or re-found by another, and how an attempt ends or lets go of it."""
from __future__ import annotations

import re
import uuid
from typing import Any, Dict, Optional, Tuple

from ..client import Client, Run
from .results import error_of, traceback_of

LABEL_HEADER = "runboard_label"
OWNER_HEADER = "runboard_owner"
KIND_CHARS = re.compile(r"[^a-z0-9_.-]+")
MAX_KIND = 64
MAX_LABEL = 256
KEY_NAMESPACE = uuid.UUID("6f1c1e52-4a0e-4f7e-9f43-6d2b8a3c9e10")


def kind_of(task_name: str) -> str:
    """The task's name on the kind pattern ``[a-z0-9_.-]{1,64}``: lower-cased, each run of
    other characters turned into ``_``, ``_`` stripped at both ends, cut to 64
    (``proj.tasks.Send Mail!`` → ``proj.tasks.send_mail``); ``task`` when nothing is left."""
    return (KIND_CHARS.sub("_", str(task_name).lower()).strip("_") or "task")[:MAX_KIND]



def header(source, name: str) -> Any:
    value = source.get(name)
    if value is None:
        headers = source.get("headers")
        if isinstance(headers, dict):
            value = headers.get(name)
    return value


def identity(task_name: str, source) -> Tuple[str, dict]:
    """The creation's idempotency key and body, from a task request (a Celery ``Context``
    or a message's headers): the same in every process and every attempt of the task, so
    a retry or the main process gets the session the first attempt created."""
    task_id = str(source.get("id"))
    label, owner = header(source, LABEL_HEADER), header(source, OWNER_HEADER)
    body: Dict[str, Any] = {"kind": kind_of(task_name),
                            "label": (task_id if label is None else str(label))[:MAX_LABEL]}
    if owner is not None and str(owner):
        body["owner"] = str(owner)
    body["meta"] = {"celery_task": str(task_name), "celery_task_id": task_id}
    nesting = source.get("replaced_task_nesting") or 0      # Task.replace keeps the id
    key = "celery-" + uuid.uuid5(KEY_NAMESPACE, f"{task_id}\0{nesting}").hex
    return key, body


def open_run(client: Client, task_name: str, source, worker_id: Optional[str]) -> Run:
    """Create-and-start (or, for a later attempt, re-find and go on with) the session."""
    key, body = identity(task_name, source)
    options = dict(label=body["label"], owner=body.get("owner"), meta=body["meta"], worker_id=worker_id)
    run = client.track(body["kind"], idempotency_key=key, **options)
    if run.abandoned and run.rejection is None and run.id is not None:
        # The key's session is finished already: the task id was used before, or the
        # session was failed "heartbeat lost" while a retry waited.  A new one, then.
        run.release()
        earlier = run.id
        run = client.track(body["kind"], **options)
        run.log("warning", f"the session of an earlier run of task {source.get('id')} ({earlier}) had already "
                "finished; this run is a new session", earlier_session=earlier)
    return run


def reopen(client: Client, task_name: str, source) -> Run:
    """The task's session from a process that never had it (the worker's main process):
    the same creation request, so the server answers with the session the task's own
    process created, or creates it now (``pending``: it never ran)."""
    key, body = identity(task_name, source)
    return client.track(body["kind"], idempotency_key=key, label=body["label"], owner=body.get("owner"),
                        meta=body["meta"], start=False)


def fail(run: Run, exception: Optional[BaseException], tb=None, einfo=None) -> None:
    run.log("error", traceback_of(exception, tb, einfo))
    run.finish("failed", error=error_of(exception))



def detach(run: Run) -> None:
    """Deliver what the attempt reported and let go of the session, which stays running
    for the next attempt (any process); spool what the server did not take."""
    run.release()


