"""Who this process is in the worker registry, and how much memory it holds."""
from __future__ import annotations

import dataclasses
import os
import resource
import socket
import uuid
from datetime import datetime, timezone

from repositories.records import iso

VERSION = "0.3.0"


def rss_bytes() -> int:
    """Resident memory now (Linux /proc), else the peak the kernel reports."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclasses.dataclass(frozen=True)
class WorkerIdentity:
    worker_id: str
    host: str
    pid: int
    version: str
    started_at: datetime

    @classmethod
    def of_this_process(cls) -> "WorkerIdentity":
        host = socket.gethostname()[:200] or "localhost"
        pid = os.getpid()
        # A random suffix: a pid is reused across restarts and containers.
        return cls(f"{host}:{pid}:{uuid.uuid4().hex[:6]}", host, pid, VERSION, datetime.now(timezone.utc))

    def as_meta(self) -> dict:
        return {"worker_id": self.worker_id, "host": self.host, "pid": self.pid}

    def started(self) -> str:
        return iso(self.started_at)
