"""What this process tracks: each Celery app's settings and its client here, the runs of
the tasks executing here, the main process's memory of received tasks, and what keeps a
fork from inheriting a held lock.  Siblings read the module's globals through the module
(``process.lock``): a fork's child replaces the locks."""
from __future__ import annotations

import atexit
import collections
import fnmatch
import logging
import os
import threading
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

from ..client import Client, Run

log = logging.getLogger("runboard")

#: Tasks whose identity (headers) the main process remembers, for a child that dies.
RECEIVED_KEPT = 10_000

ClientSource = Union[None, Client, Callable[[], Client]]


class Tracking:
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
        with lock:
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


lock = threading.Lock()
trackings: Dict[int, Tracking] = {}
#: Runs of tasks executing in this process: task id → (run, the current run before it).
open_runs: Dict[str, Tuple[Run, Optional[Run]]] = {}
#: The main process's memory of received tasks' identities (label, owner), by task id.
received: "collections.OrderedDict[str, dict]" = collections.OrderedDict()


#: Held while a background thread reports (``in_background``), and by a fork until the
#: child exists: a child forked while that thread held an import lock, or the lock of the
#: stream Celery logs to, would hang on it for ever (the prefork pool forks a replacement
#: the moment a terminated child is gone, just when the main process reports its revoke).
fork_guard = threading.Lock()


def _before_fork() -> None:
    fork_guard.acquire()


def _after_fork_in_parent() -> None:
    fork_guard.release()


def _after_fork_in_child() -> None:
    global lock, fork_guard
    lock = threading.Lock()
    fork_guard = threading.Lock()
    open_runs.clear()
    received.clear()
    for tracking in trackings.values():
        tracking.forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


def tracking_of(task) -> Optional[Tracking]:
    if task is None or not trackings:
        return None
    try:
        tracking = trackings.get(id(task.app))
    except Exception:                          # noqa: BLE001 - not a bound task
        return None
    return tracking if tracking is not None and tracking.tracks(task.name) else None


def in_background(work: Callable[[], None], what: str) -> None:
    """The main process's consumer must not wait for the server: report from a thread
    (not a daemon, so the interpreter lets it deliver or spool before exiting).  A fork
    waits until it is done (``fork_guard``)."""
    def target() -> None:
        try:
            with fork_guard:
                work()
        except Exception:                      # noqa: BLE001
            log.exception("runboard: reporting %s failed", what)
    threading.Thread(target=target, name="runboard-celery", daemon=False).start()


def local_run(task_id: Optional[str]) -> Optional[Run]:
    entry = open_runs.get(task_id) if task_id is not None else None
    return entry[0] if entry is not None else None

