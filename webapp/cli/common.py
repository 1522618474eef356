"""What every command group shares: the SQL-store check, one way to show domain errors,
the duration and time argument types, and the table and JSON printers."""
from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta, timezone

import click
from flask import current_app

from repositories import validation as check
from repositories.errors import RunboardError, ValidationError
from repositories.records import utcnow

from ..settings import MAX_DURATION, parse_duration


def needs_sql() -> None:
    """A memory:// store lives inside the server process: a CLI process would see an empty
    one of its own, so every command refuses it rather than report nothing."""
    if current_app.config["RUNBOARD"].store == "memory":
        raise click.ClickException(
            "this command needs a SQL store: memory:// lives inside the server process; "
            "authenticate with RUNBOARD_ADMIN_TOKEN instead")


@contextlib.contextmanager
def domain_errors():
    """Domain errors (unknown session or token, refused transition, bad input) become one
    clear line and exit status 1, never a traceback."""
    try:
        yield
    except RunboardError as exc:
        raise click.ClickException(exc.message) from None


class Duration(click.ParamType):
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` (what the settings accept) → timedelta.

    ``allow_zero`` admits ``0s`` where it has a meaning: for cleanup it is "finished any
    time before now", i.e. every finished session.  A timeout or a look-back of nothing
    means nothing, so everywhere else ``0s`` is refused."""

    name = "duration"

    def __init__(self, *, allow_zero: bool = False):
        self.allow_zero = allow_zero

    def convert(self, value, param, ctx):
        try:
            duration = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not timedelta(0) <= duration <= MAX_DURATION or (not duration and not self.allow_zero):
            self.fail("must be longer than 0s and at most 36500d", param, ctx)
        return duration


DURATION = Duration()
AGE = Duration(allow_zero=True)       # how long ago something finished; 0s is "any time"


class Since(click.ParamType):
    """A duration back from now (``7d``), a date (``2026-11-01``, midnight UTC) or an ISO
    time (``2026-11-01T09:00:00Z``; without a zone it is read as UTC)."""

    name = "since"

    def convert(self, value, param, ctx):
        with contextlib.suppress(click.BadParameter):
            return utcnow() - DURATION.convert(value, param, ctx)
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{str(value)[:40]!r} is neither a duration (7d), a date (2026-11-01) "
                      "nor an ISO time (2026-11-01T09:00:00Z)", param, ctx)
        try:
            return check.check_time(param.name if param else "since",
                                    moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
        except ValidationError as exc:
            self.fail(exc.message, param, ctx)


def show_duration(duration: timedelta) -> str:
    """The shortest exact spelling a Duration accepts back: 7d, 90m, 45s, 0s."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"
