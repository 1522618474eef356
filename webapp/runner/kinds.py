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
import importlib
import importlib.metadata
from typing import Any, Callable, Iterable, Protocol

import pydantic

from repositories.errors import ConfigurationError
from repositories.validation import KIND_CHARS, KIND_RE


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


ENTRY_POINT_GROUP = "runboard.kinds"


def load_kinds(spec: str, builtins: Iterable[JobKind] = ()) -> tuple[JobKind, ...]:
    """The kinds from outside (SPEC §5): those named by ``spec`` (RUNBOARD_KINDS,
    comma-separated ``module:attribute`` paths, the attribute possibly dotted), then those
    published under the ``runboard.kinds`` entry-point group.  Each path or entry point
    gives a ``JobKind`` or a list (or tuple) of them.  ``builtins`` are not returned; they
    are passed only so that a kind reusing one of their names is refused.

    Why here, once, at start-up: the web app and every worker (gunicorn's, the CLI's)
    build their registry through this one function, so they all run the same set; and a
    kind that cannot be imported must stop start-up with one line naming it rather than
    surface later as a 400 "unknown kind" or a job that fails on some worker only.  So
    every problem is a ConfigurationError of one line that starts with ``RUNBOARD_KINDS:
    <path>:`` or ``entry point runboard.kinds <name> (<dist>):`` and says why.  The same
    object reached twice (a path that is also an entry point) counts once.
    """
    seen: dict[str, tuple[JobKind, str]] = {kind.name: (kind, "the built-in kinds") for kind in builtins}
    loaded: list[JobKind] = []

    def add(value: Any, where: str, what: str) -> None:
        for kind in _kinds_of(value, where):
            earlier = seen.get(kind.name)
            if earlier is not None and earlier[0] is kind:
                continue
            if earlier is not None:
                raise ConfigurationError(f"{where}: kind {kind.name!r} is already defined by {earlier[1]}")
            seen[kind.name] = (kind, what)
            loaded.append(kind)

    for path in (part.strip() for part in spec.split(",")):
        if path:
            where = f"RUNBOARD_KINDS: {_shown(path)}"
            add(_import(path, where), where, f"RUNBOARD_KINDS {_shown(path)}")
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = entry.dist.name if entry.dist is not None else "unknown distribution"
        label = f"entry point {ENTRY_POINT_GROUP} {_shown(entry.name)} ({_shown(dist)})"
        path = entry.value.split("[", 1)[0].strip()      # without any ``[extras]``
        where = f"{label}: {_shown(path)}"
        add(_import(path, where), where, label)
    return tuple(loaded)


def _import(path: str, where: str) -> Any:
    """The object at ``module:attribute``; a ConfigurationError starting ``where``."""
    module_name, colon, attribute = path.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    names = attribute.split(".")
    if not colon or not all(part.isidentifier() for part in (*module_name.split("."), *names)):
        raise ConfigurationError(f"{where}: malformed path (use module:attribute, e.g. mypackage.kinds:KINDS)")
    try:
        value = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigurationError(f"{where}: module {exc.name!r} not found") from None
        raise ConfigurationError(f"{where}: importing it raised {_describe(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the kind's own code at import
        raise ConfigurationError(f"{where}: importing it raised {_describe(exc)}") from None
    for depth, name in enumerate(names):
        try:
            value = getattr(value, name)
        except AttributeError:
            owner = module_name if depth == 0 else f"{module_name}:{'.'.join(names[:depth])}"
            raise ConfigurationError(f"{where}: attribute {name!r} missing from {owner}") from None
        except Exception as exc:  # noqa: BLE001 - a property or module __getattr__ that raised
            raise ConfigurationError(f"{where}: reading {name!r} raised {_describe(exc)}") from None
    return value


def _kinds_of(value: Any, where: str) -> list[JobKind]:
    """``value`` as a list of well-formed kinds, or a ConfigurationError saying what is wrong."""
    many = isinstance(value, (list, tuple))
    kinds = list(value) if many else [value]
    for index, kind in enumerate(kinds):
        which = f"item {index}" if many else "it"
        if not isinstance(kind, JobKind):
            raise ConfigurationError(
                f"{where}: {which} is not a JobKind (from webapp.runner) but {type(kind).__qualname__}; "
                "give a JobKind or a list of them")
        if not isinstance(kind.name, str) or not KIND_RE.fullmatch(kind.name):
            raise ConfigurationError(f"{where}: kind name {str(kind.name)[:80]!r} is not {KIND_CHARS}")
        if not (isinstance(kind.params, type) and issubclass(kind.params, pydantic.BaseModel)):
            raise ConfigurationError(f"{where}: kind {kind.name!r}: params is not a pydantic model class")
        if not callable(kind.run):
            raise ConfigurationError(f"{where}: kind {kind.name!r}: run is not callable")
    return kinds


def _shown(text: str) -> str:
    """``text`` as it may appear in a one-line message: bounded, quoted if unprintable."""
    text = text[:200]
    return text if text.isprintable() else repr(text)


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (bounded), for a one-line error."""
    lines = str(exc).strip().splitlines()
    first = lines[0][:200] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
