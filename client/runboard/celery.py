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

import atexit
import collections
import fnmatch
import json
import logging
import os
import re
import sys
import threading
import traceback
import uuid
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

from celery import signals
from celery import states as celery_states

from . import _current_run
from .client import Client, Run, summary
from .handler import OWN_LOGGERS, extra_fields, level_of, message_of
from .reporting import Op

log = logging.getLogger("runboard")

__all__ = ["track_tasks", "kind_of"]

LABEL_HEADER = "runboard_label"
OWNER_HEADER = "runboard_owner"
KIND_CHARS = re.compile(r"[^a-z0-9_.-]+")
MAX_KIND = 64
MAX_LABEL = 256
#: Loggers of Celery's own machinery, left out of a session's log like the client's own;
#: ``celery.redirected`` (a task's ``print`` under the worker's stdout redirection) is kept.
MACHINERY = ("celery", "kombu", "amqp", "billiard", "vine") + OWN_LOGGERS
KEPT = ("celery.redirected",)
CELERY_FIELDS = ("task_id", "task_name")
#: A return value this large (JSON, in bytes) is stored as its cut ``repr`` instead.
MAX_RESULT_BYTES = 512 * 1024
MAX_REPR = 8 * 1024
MAX_DEPTH = 32
#: Tasks whose identity (headers) the main process remembers, for a child that dies.
RECEIVED_KEPT = 10_000
KEY_NAMESPACE = uuid.UUID("6f1c1e52-4a0e-4f7e-9f43-6d2b8a3c9e10")

ClientSource = Union[None, Client, Callable[[], Client]]


def kind_of(task_name: str) -> str:
    """The task's name on the kind pattern ``[a-z0-9_.-]{1,64}``: lower-cased, each run of
    other characters turned into ``_``, ``_`` stripped at both ends, cut to 64
    (``proj.tasks.Send Mail!`` → ``proj.tasks.send_mail``); ``task`` when nothing is left."""
    return (KIND_CHARS.sub("_", str(task_name).lower()).strip("_") or "task")[:MAX_KIND]


# -- what is tracked -------------------------------------------------------------------
class _Tracking:
    """``track_tasks``' settings for one Celery app, and its client in each process."""

    def __init__(self, app, client: ClientSource, include, exclude):
        self.app = app
        self.configure(client, include, exclude)

    def configure(self, client: ClientSource, include, exclude) -> None:
        self.source = client
        self.source_pid = os.getpid()
        self.include = None if include is None else tuple(_names(include))
        self.exclude = tuple(_names(exclude or ()))
        self._decided: Dict[str, bool] = {}
        self._clients: Dict[int, Client] = {}
        self.broken: Optional[str] = None      # why this process cannot make its client

    def tracks(self, name: str) -> bool:
        decided = self._decided.get(name)
        if decided is None:
            decided = self._decided[name] = self._decide(name)
        return decided

    def _decide(self, name: str) -> bool:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.exclude):
            return False
        if self.include is not None:
            return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.include)
        return not name.startswith("celery.")  # Celery's own (chord_unlock, backend_cleanup, …)

    def client(self) -> Client:
        """This process's client, made the first time it is needed here."""
        pid = os.getpid()
        client = self._clients.get(pid)
        if client is not None:
            return client
        with _lock:
            client = self._clients.get(pid)
            if client is None:
                client = self._make_client(pid)
                self._clients = {pid: client}  # a parent's, inherited through fork, is not ours
        return client

    def _make_client(self, pid: int) -> Client:
        source = self.source
        if source is None:
            return Client()
        if isinstance(source, Client):
            return source if pid == self.source_pid else _copy_of(source)
        client = source()
        if not isinstance(client, Client):
            raise TypeError(f"track_tasks(client=...) returned {type(client).__name__}, not a runboard.Client")
        return client

    def forked(self) -> None:
        for client in self._clients.values():
            atexit.unregister(client.close)    # the parent's: not ours to flush at exit
        self._clients = {}
        self.broken = None

    def close_here(self) -> None:
        client = self._clients.pop(os.getpid(), None)
        if client is not None and client is not self.source:
            client.close()


def _names(patterns: Iterable[str]) -> Iterable[str]:
    if isinstance(patterns, str):
        return (patterns,)
    return tuple(str(pattern) for pattern in patterns)


def _copy_of(client: Client) -> Client:
    """A client to the same server with the same token and settings, for a forked child."""
    transport = client._transport
    return Client(client.url, transport.token, timeout=transport.timeout, flush_timeout=client.flush_timeout,
                  flush_interval=client.flush_interval, heartbeat_interval=client.heartbeat_interval,
                  stop_poll=client.stop_poll, max_buffered_logs=client.max_buffered_logs,
                  spool_dir=str(client.spool_dir))


_lock = threading.Lock()
_trackings: Dict[int, _Tracking] = {}
#: Runs of tasks executing in this process: task id → (run, the current run before it).
_open: Dict[str, Tuple[Run, Optional[Run]]] = {}
#: The main process's memory of received tasks' identities (label, owner), by task id.
_received: "collections.OrderedDict[str, dict]" = collections.OrderedDict()


#: Held while a background thread reports (``_in_background``), and by a fork until the
#: child exists: a child forked while that thread held an import lock, or the lock of the
#: stream Celery logs to, would hang on it for ever (the prefork pool forks a replacement
#: the moment a terminated child is gone, just when the main process reports its revoke).
_fork_guard = threading.Lock()


def _before_fork() -> None:
    _fork_guard.acquire()


def _after_fork_in_parent() -> None:
    _fork_guard.release()


def _after_fork_in_child() -> None:
    global _lock, _fork_guard
    _lock = threading.Lock()
    _fork_guard = threading.Lock()
    _open.clear()
    _received.clear()
    for tracking in _trackings.values():
        tracking.forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def _tracking_of(task) -> Optional[_Tracking]:
    if task is None or not _trackings:
        return None
    try:
        tracking = _trackings.get(id(task.app))
    except Exception:                          # noqa: BLE001 - not a bound task
        return None
    return tracking if tracking is not None and tracking.tracks(task.name) else None


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
    with _lock:
        tracking = _trackings.get(id(celery_app))
        if tracking is None:
            _trackings[id(celery_app)] = _Tracking(celery_app, client, include, exclude)
        else:
            tracking.configure(client, include, exclude)
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"runboard.celery.{receiver.__name__}")


# -- sessions --------------------------------------------------------------------------
def _header(source, name: str) -> Any:
    value = source.get(name)
    if value is None:
        headers = source.get("headers")
        if isinstance(headers, dict):
            value = headers.get(name)
    return value


def _identity(task_name: str, source) -> Tuple[str, dict]:
    """The creation's idempotency key and body, from a task request (a Celery ``Context``
    or a message's headers): the same in every process and every attempt of the task, so
    a retry or the main process gets the session the first attempt created."""
    task_id = str(source.get("id"))
    label, owner = _header(source, LABEL_HEADER), _header(source, OWNER_HEADER)
    body: Dict[str, Any] = {"kind": kind_of(task_name),
                            "label": (task_id if label is None else str(label))[:MAX_LABEL]}
    if owner is not None and str(owner):
        body["owner"] = str(owner)
    body["meta"] = {"celery_task": str(task_name), "celery_task_id": task_id}
    nesting = source.get("replaced_task_nesting") or 0      # Task.replace keeps the id
    key = "celery-" + uuid.uuid5(KEY_NAMESPACE, f"{task_id}\0{nesting}").hex
    return key, body


def _open_run(client: Client, task_name: str, source, worker_id: Optional[str]) -> Run:
    """Create-and-start (or, for a later attempt, re-find and go on with) the session."""
    key, body = _identity(task_name, source)
    options = dict(label=body["label"], owner=body.get("owner"), meta=body["meta"], worker_id=worker_id)
    run = client.track(body["kind"], idempotency_key=key, **options)
    if run.abandoned and run.rejection is None and run.id is not None:
        # The key's session is finished already: the task id was used before, or the
        # session was failed "heartbeat lost" while a retry waited.  A new one, then.
        client._forget(run)
        earlier = run.id
        run = client.track(body["kind"], **options)
        run.log("warning", f"the session of an earlier run of task {source.get('id')} ({earlier}) had already "
                "finished; this run is a new session", earlier_session=earlier)
    return run


def _reopen(client: Client, task_name: str, source) -> Run:
    """The task's session from a process that never had it (the worker's main process):
    the same creation request, so the server answers with the session the task's own
    process created, or creates it now (``pending``: it never ran)."""
    key, body = _identity(task_name, source)
    run = Run(client, None)
    run.enqueue(Op("create", body, key))
    return client._begin(run)


def result_of(value: Any) -> dict:
    """A task's return value as the session's ``result``: a dict the server can store as
    it is, else ``{"value": value}``, with the value's ``repr`` when JSON cannot carry it."""
    if isinstance(value, dict) and _storable(value):
        return value
    if not isinstance(value, dict) and _storable({"value": value}):
        return {"value": value}
    return {"value": _repr(value)}


def _storable(document: dict) -> bool:
    try:
        text = json.dumps(document, allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError, UnicodeError, OverflowError):
        return False
    return size <= MAX_RESULT_BYTES and "\\u0000" not in text and _depth(document) <= MAX_DEPTH


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, (list, tuple)):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level - 1


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:                          # noqa: BLE001 - a broken __repr__
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 2] + " …"


def _traceback_of(exception: Optional[BaseException], tb=None, einfo=None) -> str:
    text = getattr(einfo, "traceback", None)
    if text:
        return str(text).rstrip()
    if exception is None:
        return "the task failed"
    return "".join(traceback.format_exception(type(exception), exception, tb or exception.__traceback__)).rstrip()


def _error_of(exception: Optional[BaseException]) -> str:
    return (summary(exception) if exception is not None else "the task failed").replace("\x00", "\\x00")


def _fail(run: Run, exception: Optional[BaseException], tb=None, einfo=None) -> None:
    run.log("error", _traceback_of(exception, tb, einfo))
    run.finish("failed", error=_error_of(exception))


def _in_background(work: Callable[[], None], what: str) -> None:
    """The main process's consumer must not wait for the server: report from a thread
    (not a daemon, so the interpreter lets it deliver or spool before exiting).  A fork
    waits until it is done (``_fork_guard``)."""
    def target() -> None:
        try:
            with _fork_guard:
                work()
        except Exception:                      # noqa: BLE001
            log.exception("runboard: reporting %s failed", what)
    threading.Thread(target=target, name="runboard-celery", daemon=False).start()


def _local(task_id: Optional[str]) -> Optional[Run]:
    entry = _open.get(task_id) if task_id is not None else None
    return entry[0] if entry is not None else None


# -- logging ---------------------------------------------------------------------------
class _Router(logging.Handler):
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


_router = _Router()


def _route_logging() -> None:
    for logger in (logging.getLogger(), logging.getLogger("celery.task")):
        if _router not in logger.handlers:
            logger.addHandler(_router)


# -- the signals -----------------------------------------------------------------------
def _on_prerun(sender=None, task_id=None, task=None, **_):
    task = task or sender
    tracking = _tracking_of(task)
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
    _route_logging()
    run = _open_run(client, task.name, request, getattr(request, "hostname", None) or None)
    with _lock:
        _open[task_id] = (run, _current_run.get())
    _current_run.set(run)


def _on_success(sender=None, result=None, **_):
    run = _local(getattr(sender.request, "id", None)) if sender is not None else None
    if run is not None and run.state is None:
        run.finish("stopped" if run.stop_seen else "completed", result=result_of(result))


def _on_failure(sender=None, task_id=None, exception=None, traceback=None, einfo=None, **_):
    tracking = _tracking_of(sender)
    if tracking is None or tracking.broken or task_id is None or getattr(sender.request, "is_eager", False):
        return
    run = _local(task_id)
    if run is not None:
        if run.state is None:
            _fail(run, exception, traceback, einfo)
        return
    # Not running in this process: the main process after the task's child died or was
    # killed at its hard time limit (reported once: a hard time limit sends this signal
    # for TimeLimitExceeded, then again when the killed child is found gone).
    with _lock:
        source = _received.get(task_id)
        if source is None:
            source = _received[task_id] = {"id": task_id}
        if source.get("reported"):
            return
        source["reported"] = True
    text = _traceback_of(exception, traceback, einfo)

    def report() -> None:
        run = _reopen(tracking.client(), sender.name, source)
        run.log("error", text)
        run.finish("failed", error=_error_of(exception))
    _in_background(report, f"the failure of task {task_id}")


def _on_retry(sender=None, request=None, reason=None, einfo=None, **_):
    run = _local(getattr(request, "id", None))
    if run is None or run.state is not None:
        return
    retries = (getattr(request, "retries", 0) or 0) + 1
    run.log("warning", f"retry {retries}: {reason}" if reason is not None else f"retry {retries}", retry=retries)


def _on_postrun(sender=None, task_id=None, task=None, retval=None, state=None, **_):
    with _lock:
        entry = _open.pop(task_id, None) if task_id is not None else None
    if entry is None:
        return
    run, before = entry
    _current_run.set(before)
    if run.state is not None:
        return
    if state == celery_states.RETRY or (state == celery_states.REJECTED and getattr(retval, "requeue", False)):
        if state == celery_states.REJECTED:
            run.log("warning", f"rejected and requeued: {retval}")
        _detach(run)
    elif state == celery_states.IGNORED:
        run.log("info", f"the task raised Ignore ({retval})" if str(retval or "") else "the task raised Ignore")
        run.finish("stopped" if run.stop_seen else "completed")
    elif state == celery_states.SUCCESS:
        run.finish("stopped" if run.stop_seen else "completed", result=result_of(retval))
    elif state is None and _terminating():
        # The pool process is being terminated (a revoke with terminate=True, a cold
        # shutdown): the task did not fail.  Deliver what it reported, once, and leave the
        # session to the main process (task_revoked: stopped), a redelivery, or the sweep.
        run.flush()
        run._client._forget(run)
    else:                                      # FAILURE without task_failure, REJECTED, a BaseException
        exception = retval if isinstance(retval, BaseException) else sys.exc_info()[1]
        _fail(run, exception)


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


def _detach(run: Run) -> None:
    """Deliver what the attempt reported and let go of the session, which stays running
    for the next attempt (any process); spool what the server did not take."""
    client = run._client
    if not run.flush(timeout=client.flush_timeout) and not run.abandoned:
        run._spool()
    client._forget(run)


def _on_revoked(sender=None, request=None, terminated=False, signum=None, expired=False, **_):
    tracking = _tracking_of(sender)
    if tracking is None or request is None or request.get("id") is None:
        return
    task_id = request.get("id")
    if expired:
        why = "expired"
    elif terminated:
        why = f"revoked and terminated (signal {signum})" if signum else "revoked and terminated"
    else:
        why = "revoked"
    run = _local(task_id)                      # running in this process (threads, solo pool)
    with _lock:
        source = _received.get(task_id)
        if source is not None and source.get("reported"):
            return
        _received[task_id] = {**(source or {}), "reported": True}

    def report() -> None:
        target = run if run is not None else _reopen(tracking.client(), sender.name, request)
        target.request_stop(why)
        target.log("warning", f"task {why}")
        target.finish("stopped")
    _in_background(report, f"the revocation of task {task_id}")


def _on_received(sender=None, request=None, **_):
    """The main process keeps each task's identity, to report it if its child dies."""
    task = getattr(request, "task", None)
    if _tracking_of(task) is None:
        return
    headers = getattr(request, "request_dict", None) or {}
    identity = {"id": request.id, "replaced_task_nesting": headers.get("replaced_task_nesting")}
    for name in (LABEL_HEADER, OWNER_HEADER):
        identity[name] = _header(headers, name)
    with _lock:
        _received[request.id] = identity
        while len(_received) > RECEIVED_KEPT:
            _received.popitem(last=False)


def _on_process_shutdown(**_):
    """A pool process ends (children exit without running atexit): deliver what is left."""
    for tracking in list(_trackings.values()):
        try:
            tracking.close_here()
        except Exception:                      # noqa: BLE001
            log.exception("runboard: closing the client failed")


_RECEIVERS = (
    (signals.task_prerun, _on_prerun),
    (signals.task_success, _on_success),
    (signals.task_failure, _on_failure),
    (signals.task_retry, _on_retry),
    (signals.task_postrun, _on_postrun),
    (signals.task_revoked, _on_revoked),
    (signals.task_received, _on_received),
    (signals.worker_process_shutdown, _on_process_shutdown),
)
