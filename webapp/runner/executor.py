"""What the web app asks of wherever registered kinds run (SPEC §5, ``RUNBOARD_EXECUTOR``).

Two executors exist: ``threads`` (``runner.Runner``: a pool inside each app process) and
``celery`` (``celery_executor.CeleryExecutor``: the app only queues, Celery workers run
the same ``Runner`` code).  The services, the panel and gunicorn's hooks talk to this
interface only, so neither knows which one is configured.
"""
from __future__ import annotations

import abc

import pydantic

from repositories.errors import ValidationError

from .identity import WorkerIdentity
from .kinds import JobKind


def params_error(exc: pydantic.ValidationError) -> ValidationError:
    """A pydantic error on a job's params as the API's 400, naming ``params.<field>``."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    message = {"missing": "is required", "extra_forbidden": "unknown parameter"}.get(first["type"], first["msg"])
    return ValidationError(f"params.{where}" if where else "params", message)


class Executor(abc.ABC):
    #: Who this process is: the scheduler's lease holder, and the runner's worker id.
    identity: WorkerIdentity

    def validate(self, kind: JobKind, params: dict | None) -> pydantic.BaseModel:
        """The kind's params model; ValidationError("params.<field>") when they don't fit,
        before anything is stored."""
        try:
            return kind.params.model_validate(params or {})
        except pydantic.ValidationError as exc:
            raise params_error(exc) from None

    @abc.abstractmethod
    def submit(self, session_id: str, kind: JobKind, params: pydantic.BaseModel) -> None:
        """Hand a committed ``pending`` session to whatever will run it.  Never raises for a
        hand-over that failed: the session is failed with an error that says why."""

    @abc.abstractmethod
    def notify_stop(self, session_id: str) -> bool:
        """Tell the job at once, when it runs in this process (True); otherwise it learns
        of the stop from the store."""

    @abc.abstractmethod
    def start(self) -> None:
        """Begin the background work of a serving process (idempotent)."""

    @abc.abstractmethod
    def shutdown(self, timeout: float = 20.0) -> None:
        """End it: jobs of this process are asked to stop and finished within ``timeout``."""
