"""Declared request and response schemas: they validate input and generate the OpenAPI
document, so the two cannot drift apart."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from typing_extensions import NotRequired, TypedDict

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt,
                      StrictStr, WithJsonSchema)
from pydantic_core import PydanticCustomError

from repositories import validation as limits

StateName = Literal["pending", "running", "completed", "failed", "stopped"]
TerminalState = Literal["completed", "failed", "stopped"]
LogLevel = Literal[limits.LOG_LEVELS]  # type: ignore[valid-type]   # the store's own tuple
JsonObject = dict[str, Any]


class Body(BaseModel):
    """Request bodies: strict types, and a typo'd field is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)


_DIGITS = re.compile(r"-?[0-9]+")


def _integer_text(value: Any) -> Any:
    """Query integers must be written as integers: no "5.0", " 5" or "1e3"."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be an integer written in digits")
    return value


QueryInt = Annotated[int, BeforeValidator(_integer_text)]

#: RFC 3339 (the profile of ISO-8601 JSON Schema calls date-time) with a zone: ``Z`` or a
#: numeric offset.  Checked before parsing because ``fromisoformat`` also takes naive
#: times, bare dates and ISO week dates.  Digits past microseconds are dropped.
_ZONED_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")


def _zoned_time(text: str) -> datetime:
    """An aware datetime; the store converts it to UTC and checks its year (2000–9999)."""
    if _ZONED_TIME.fullmatch(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:          # an impossible date or offset: 2026-02-30, +24:00
            pass
    raise PydanticCustomError("zoned_time", "must be an ISO-8601 time with Z or a UTC offset, "
                                            "e.g. 2026-11-01T09:30:00.250000Z")


DATE_TIME = WithJsonSchema({"type": "string", "format": "date-time"})
ZonedTime = Annotated[StrictStr, AfterValidator(_zoned_time), DATE_TIME]
TimeText = Annotated[str, DATE_TIME]                 # what responses carry: ``records.iso``


class Query(BaseModel):
    """Query strings arrive as text, so numbers are parsed, but unknown parameters are errors."""

    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------
class CreateSession(Body):
    kind: StrictStr = Field(pattern=limits.KIND_PATTERN)
    label: StrictStr = Field("", max_length=limits.MAX_LABEL)
    owner: StrictStr | None = Field(None, min_length=1, max_length=limits.MAX_OWNER)
    params: JsonObject | None = None
    meta: JsonObject | None = None


class StartSession(Body):
    """Optional: no body, an empty one or ``{}`` starts the session with no worker_id."""

    worker_id: StrictStr | None = Field(None, min_length=1, max_length=limits.MAX_WORKER_ID,
                                        description="who starts the session: a worker, a process, a client")


class NoBody(Body):
    """Takes nothing: an absent or empty body, or ``{}``; any field is refused by name."""


class Usage(Body):
    tokens: StrictInt = Field(0, ge=0, le=limits.MAX_TOKENS_DELTA)
    cost: StrictFloat | StrictInt = Field(0, ge=0, le=limits.MAX_COST_DELTA)


class ProgressReport(Body):
    progress: JsonObject | None = None
    meta: JsonObject | None = None
    usage: Usage | None = None


class LogEntryIn(TypedDict):
    """A TypedDict, not a model: batches of a thousand validate into plain dicts, which the
    store takes as they are (a model per entry cost more than storing it)."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    level: LogLevel
    message: Annotated[StrictStr, Field(max_length=limits.MAX_MESSAGE_BYTES)]  # characters here, bytes in the store
    fields: NotRequired[JsonObject | None]
    at: NotRequired[ZonedTime | None]          # when it happened, by the reporter's clock


class LogBatch(Body):
    entries: list[LogEntryIn] = Field(min_length=1, max_length=limits.MAX_LOG_BATCH)


class Finish(Body):
    state: TerminalState
    result: JsonObject | None = None
    error: StrictStr | None = Field(None, max_length=65536)


class WorkerHeartbeat(Body):
    worker_id: StrictStr = Field(min_length=1, max_length=limits.MAX_WORKER_ID)
    host: StrictStr = Field(min_length=1, max_length=limits.MAX_HOST)
    pid: StrictInt = Field(ge=0, le=limits.MAX_PID)
    active: StrictInt = Field(0, ge=0, le=limits.MAX_PID)
    rss_bytes: StrictInt | None = Field(None, ge=0, le=limits.MAX_RSS_BYTES)
    version: StrictStr | None = Field(None, max_length=limits.MAX_VERSION)


class ListQuery(Query):
    state: StateName | None = None
    owner: str | None = Field(None, min_length=1, max_length=limits.MAX_OWNER)
    kind: str | None = Field(None, pattern=limits.KIND_PATTERN)
    q: str | None = Field(None, max_length=limits.MAX_LABEL)        # searches labels
    limit: QueryInt = Field(50, ge=1, le=limits.MAX_LIST_LIMIT)
    cursor: str | None = Field(None, max_length=64)


class LogsQuery(Query):
    after: QueryInt = Field(0, ge=0, le=limits.MAX_LOG_SEQ)
    limit: QueryInt = Field(1000, ge=1, le=limits.MAX_LOG_PAGE)


class DownloadQuery(Query):
    format: Literal["txt", "json"] = "txt"


class SnapshotQuery(Query):
    limit: QueryInt = Field(200, ge=1, le=limits.MAX_SNAPSHOT_LIMIT)


class UsageQuery(Query):
    by: Literal["owner", "kind", "engine"] = "owner"
    since: str | None = Field(None, max_length=40,
                              description="ISO-8601 time, e.g. 2026-11-01T00:00:00Z")


# -- responses ------------------------------------------------------------------------------
class UsageOut(BaseModel):
    tokens: int
    cost: float | None = Field(None, description="admins and workers only")


class SessionOut(BaseModel):
    id: str
    kind: str
    label: str
    owner: str
    state: StateName
    stop_requested: bool
    progress: JsonObject
    meta: JsonObject
    params: JsonObject
    result: JsonObject | None
    error: str | None
    usage: UsageOut
    created_at: str
    started_at: str | None
    updated_at: str
    finished_at: str | None
    heartbeat_at: str | None
    log_count: int
    worker_id: str | None = Field(description="who started the session: a runner process, a Celery worker or a client")


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None


class ProgressAckOut(BaseModel):
    state: StateName
    stop_requested: bool


class AppendOut(BaseModel):
    first_seq: int
    last_seq: int


class LogEntryOut(BaseModel):
    seq: int
    ts: TimeText = Field(description="when the server stored the entry")
    at: TimeText | None = Field(description="when it happened by the reporter's clock; null when not sent")
    level: LogLevel
    message: str
    fields: JsonObject


class LogPageOut(BaseModel):
    entries: list[LogEntryOut]
    next_after: int


class LogDownloadOut(BaseModel):
    session: SessionOut
    entries: list[LogEntryOut]


class SnapshotOut(BaseModel):
    taken_at: str
    counts: dict[StateName, int]
    sessions: dict[StateName, list[SessionOut]]


class WorkerOut(BaseModel):
    worker_id: str
    host: str
    pid: int
    active: int
    rss_bytes: int | None
    version: str | None
    last_seen: str
    started_at: str | None
    status: Literal["ok", "stale"]


class WorkerList(BaseModel):
    workers: list[WorkerOut]


class UsageRowOut(BaseModel):
    key: str
    sessions: int
    tokens: int
    cost: float | None = Field(None, description="admins and workers only")


class UsageOutList(BaseModel):
    rows: list[UsageRowOut]


class Health(BaseModel):
    status: Literal["ok"]
    store: Literal["memory", "sqlite", "postgresql"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    #: Sent with ``log_limit_exceeded``: entries stored and the session's cap.
    stored: int | None = None
    limit: int | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail
