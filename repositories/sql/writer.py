"""SQLite's one writer, handed on in order within a process and promptly across processes.

SQLite admits one write transaction at a time.  A connection that finds the write lock
taken waits in SQLite's busy handler, which polls with sleeps growing to 100 ms: under
load a process's waiting writer sleeps through many commits of another process, whose
own threads hand the lock on among themselves meanwhile, so the writes of one gunicorn
worker stall behind the other's.  So writers queue before ``BEGIN IMMEDIATE``:

* this process's threads on one ``threading.Lock``, in order;
* processes on an ``flock`` of a file beside the database (``<database>-writer``): a
  process waiting there sleeps in the kernel, which wakes it when the holder lets go.

Every writer of Runboard's (gunicorn workers, runner threads, Celery workers, the CLI)
goes through here, so SQLite's busy handler is left for writers from elsewhere (the
``sqlite3`` shell, migrations) and the lock of a killed process goes with its file
descriptors.  A forked child (gunicorn, Celery's prefork pool) starts with a lock of its
own and its own descriptor: an inherited descriptor would share its parent's lock instead
of excluding it, and keep it held if the parent died holding it.  ``filelock`` and its
kin poll with sleeps, the very thing this avoids.
"""
from __future__ import annotations

import fcntl
import os
import threading
import weakref
from typing import Optional

_writers: "weakref.WeakSet[SqliteWriter]" = weakref.WeakSet()


class SqliteWriter:
    """``with writer:`` holds the database's one writer (see the module's docstring)."""

    def __init__(self, database: Optional[str]):
        self._threads = threading.Lock()
        self._path = None if database in (None, "", ":memory:") or database.startswith("file::memory:") \
            else os.path.abspath(database) + "-writer"
        #: None for an in-memory database, which only this process can see.  Opened now, so
        #: an unwritable folder shows at start-up, not at a write.
        self._fd: Optional[int] = None if self._path is None else self._open()
        _writers.add(self)

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def _open(self) -> int:
        return os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)

    def _after_fork(self) -> None:
        """In the child, which has only the thread that forked: whatever another thread of
        the parent held is nobody's here."""
        self._threads = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._open()


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        writer._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
