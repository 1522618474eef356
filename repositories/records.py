"""Plain records the repositories hand out.  They are copies: mutating one changes nothing stored."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

from .states import State


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """UTC ISO-8601 with microseconds and a ``Z``, the only timestamp format we emit."""
    if moment is None:
        return None
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # isoformat is several times cheaper than strftime, and every response carries five;
    # cutting its "+00:00" is cheaper than a replace() before it.
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


@dataclasses.dataclass
class Session:
    id: str
    kind: str
    label: str
    owner: str
    state: State
    stop_requested: bool
    progress: dict[str, Any]
    meta: dict[str, Any]
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    usage: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime | None
    log_count: int
    worker_id: str | None = None

    def to_dict(self, *, include_cost: bool = True) -> dict[str, Any]:
        """JSON-ready form; ``include_cost=False`` is the view a plain user gets."""
        usage = dict(self.usage)
        if not include_cost:
            usage.pop("cost", None)
        return {
            "id": self.id, "kind": self.kind, "label": self.label, "owner": self.owner,
            "state": self.state.value, "stop_requested": self.stop_requested,
            "progress": self.progress, "meta": self.meta, "params": self.params,
            "result": self.result, "error": self.error, "usage": usage,
            "created_at": iso(self.created_at), "started_at": iso(self.started_at),
            "updated_at": iso(self.updated_at), "finished_at": iso(self.finished_at),
            "heartbeat_at": iso(self.heartbeat_at), "log_count": self.log_count,
            "worker_id": self.worker_id,
        }


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """``ts`` is when the server stored the entry; ``at`` when the event happened by the
    reporter's clock (None when it sent none).  ``at`` comes last so positional
    constructions written before it existed still mean the same."""
    seq: int
    ts: datetime
    level: str
    message: str
    fields: dict[str, Any]
    at: datetime | None = None

    @property
    def shown_at(self) -> datetime:
        """The time pages and downloads show: the event's own time where the reporter
        gave one (a buffered or retried entry is stored late), else when it was stored."""
        return self.at or self.ts

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": iso(self.ts), "at": iso(self.at), "level": self.level,
                "message": self.message, "fields": self.fields}


@dataclasses.dataclass(slots=True)
class LogInput:
    """One entry as a client sends it; the server adds ``seq`` and ``ts``.  ``at`` is the
    reporter's time of the event (an aware datetime, stored in UTC), None when unknown.
    Not frozen: a frozen dataclass costs four times as much to build, and the store builds
    one per entry of every batch."""
    level: str
    message: str
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Session]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True)
class LogPage:
    entries: list[LogEntry]
    next_after: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    counts: dict[str, int]
    sessions: dict[str, list[Session]]


@dataclasses.dataclass(frozen=True)
class ProgressAck:
    """What a worker needs back from a report: the stored state and whether to stop."""
    state: State
    stop_requested: bool


@dataclasses.dataclass(frozen=True)
class AppendResult:
    first_seq: int
    last_seq: int


@dataclasses.dataclass(frozen=True)
class Replay:
    """The first answer to a request repeated with the same idempotency key."""
    status: int
    body: str


class Claim:
    """What ``once`` yields: the first answer (``replay``) to a repeat, or else the right
    to run the request and ``settle`` its answer."""

    def __init__(self, replay: Replay | None = None):
        self.replay = replay
        self.answer: tuple[int, str, str | None] | None = None

    def settle(self, status: int, body: str, session_id: str | None = None) -> None:
        self.answer = (status, body, session_id)


@dataclasses.dataclass(frozen=True)
class CleanupCounts:
    sessions: int
    log_entries: int


@dataclasses.dataclass(frozen=True)
class UsageRow:
    key: str
    sessions: int
    tokens: int
    cost: float


@dataclasses.dataclass(frozen=True)
class Worker:
    worker_id: str
    host: str
    pid: int
    active: int
    rss_bytes: int | None
    version: str | None
    last_seen: datetime
    started_at: datetime | None = None     # first heartbeat of this worker id
