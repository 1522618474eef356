"""Job kinds: a plain Python function registered under a name with a params schema.

A job is ``run(ctx, params) -> dict``: ``params`` is an instance of the kind's pydantic
model (validated when the session is submitted, so a bad param is a 400 naming it) and
``ctx`` is a ``JobContext``.  The returned dict becomes the session's result.  A job that
notices ``ctx.should_stop()`` simply returns its partial result; the runner records it as
``stopped``.  A job that wants to end ``failed`` while still leaving a result raises
``JobFailed``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import pydantic


class JobContext(Protocol):
    """What a running job may do; the runner's implementation is ``webapp.runner.context``."""

    def progress(self, **fields: Any) -> None:
        """Merge ``fields`` into the session's progress (a ``None`` value removes the key).
        Cheap: writes are coalesced, so a hot loop may call it on every iteration."""

    def log(self, level: str, message: str, **fields: Any) -> None:
        """Append a log entry (``debug`` ``info`` ``warning`` ``error``); buffered."""

    def usage(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        """Add usage deltas to the session (and the hourly rollups)."""

    def should_stop(self) -> bool:
        """True once a stop was requested (API, admin panel, or server shutdown)."""


class JobFailed(Exception):
    """End the job ``failed`` with ``message`` as its error, keeping ``result``."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result


class Params(pydantic.BaseModel):
    """Base for params schemas: strict types, and an unknown param is an error."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)


@dataclasses.dataclass(frozen=True)
class JobKind:
    name: str
    run: Callable[[JobContext, pydantic.BaseModel], dict]
    params: type[pydantic.BaseModel]
    summary: str = ""


class KindRegistry:
    """The kinds this app runs in-process.  Users may create only these; admins and workers
    may also create any other kind, which is then an externally driven session."""

    def __init__(self, kinds: tuple[JobKind, ...] = ()):
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: JobKind) -> None:
        self._kinds[kind.name] = kind

    def get(self, name: str) -> JobKind | None:
        return self._kinds.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._kinds

    def names(self) -> list[str]:
        return sorted(self._kinds)
