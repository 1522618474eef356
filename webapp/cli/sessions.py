"""``flask --app wsgi sessions …`` and ``usage …``: look at and tend stored sessions from a shell.

The commands talk to the repository contract only, so they see exactly what the API and
the panel see.  They need a SQL store: a memory:// store lives inside the server process.
"""
from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from repositories.errors import InvalidTransition
from repositories.records import CleanupCounts, iso
from repositories.states import TERMINAL_STATES, State
from repositories.usage import GROUPINGS
from repositories.validation import MAX_LIST_LIMIT

from .. import services
from ..logtext import log_line, one_line
from ..retention import apply_retention
from ..runner import get_kinds
from ..sweeps import sweep_lost
from ..store import get_repository
from .common import AGE, DURATION, Since, domain_errors, echo_json, needs_sql, plural, show_duration, table

sessions = AppGroup("sessions", help="List, inspect, stop, clean up and sweep sessions.")
usage = AppGroup("usage", help="Token and cost totals from the hourly rollups.")

STATES = [s.value for s in State]
FINISHED = sorted(s.value for s in TERMINAL_STATES)
LOG_TAIL = 20


def _repository():
    needs_sql()
    return get_repository()


def _percent(progress: dict) -> str:
    percent = progress.get("percent")
    return f"{percent:.1f}%" if isinstance(percent, (int, float)) and not isinstance(percent, bool) else "-"


def _one_line(value, width: int | None = None) -> str:
    """One line (see ``logtext.one_line``), cut to ``width``."""
    text = one_line(value)
    return text if width is None or len(text) <= width else text[:width - 1] + "…"


@sessions.command("list")
@click.option("--state", type=click.Choice(STATES), help="only sessions in this state")
@click.option("--owner", help="only sessions of this owner")
@click.option("--kind", help="only sessions of this kind")
@click.option("--limit", type=click.IntRange(1, MAX_LIST_LIMIT), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the sessions as a JSON array")
def list_sessions(state, owner, kind, limit, as_json):
    """List sessions, newest first."""
    repository = _repository()
    with domain_errors():
        page = repository.list_sessions(state=State(state) if state else None, owner=owner, kind=kind,
                                        limit=limit)
    if as_json:
        return echo_json([s.to_dict() for s in page.items])
    if not page.items:
        return click.echo("no sessions")
    table(["ID", "STATE", "KIND", "OWNER", "LABEL", "PROGRESS", "CREATED"],
           [[s.id, s.state.value, s.kind, s.owner, _one_line(s.label, 40) or "-", _percent(s.progress),
             iso(s.created_at)] for s in page.items])
    if page.next_cursor:
        click.echo(f"(first {len(page.items)} shown; raise --limit or filter to see more)", err=True)


@sessions.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help='print {"session": …, "entries": [last log entries]}')
def show_session(session_id, as_json):
    """Show a session: metadata, progress, result or error, usage, timestamps and its last 20 log lines."""
    repository = _repository()
    with domain_errors():
        session = repository.get(session_id)
        entries = repository.read_logs(session.id, after=max(session.log_count - LOG_TAIL, 0),
                                       limit=LOG_TAIL).entries
    data = session.to_dict()
    if as_json:
        return echo_json({"session": data, "entries": [e.to_dict() for e in entries]})
    state = data["state"] + (" (stop requested)" if session.stop_requested else "")
    fields = [("session", data["id"]), ("kind", data["kind"]), ("label", _one_line(data["label"]) or "-"),
              ("owner", data["owner"]), ("state", state),
              ("progress", f"{_percent(session.progress)}  {json.dumps(session.progress)}"),
              ("meta", json.dumps(session.meta)), ("params", json.dumps(session.params)),
              ("result", json.dumps(session.result) if session.result is not None else "-"),
              ("error", _one_line(session.error) if session.error else "-"),
              ("usage", f"{session.usage.get('tokens', 0):,} tokens, cost {session.usage.get('cost', 0.0):.6f}")]
    fields += [(name.removesuffix("_at"), data[name] or "-")
               for name in ("created_at", "started_at", "updated_at", "finished_at", "heartbeat_at")]
    for name, value in fields:
        click.echo(f"{name:<10}{value}")
    click.echo(f"\nlogs: {plural(session.log_count, 'entry', 'entries')}"
               + (f", the last {len(entries)}:" if entries else ""))
    for entry in entries:
        click.echo(log_line(entry))


@sessions.command("stop")
@click.argument("session_id")
def stop_session(session_id):
    """Cancel a pending session, or ask a running one to stop (its worker finishes it as stopped)."""
    repository = _repository()
    with domain_errors():
        again = " again" if repository.get(session_id).stop_requested else ""
        try:
            session = services.stop_session(session_id, who="cli", role="admin")
        except InvalidTransition as exc:
            raise click.ClickException(f"session {exc.session_id} is {exc.current}; there is nothing to stop") from None
    if session.state is State.STOPPED:
        click.echo(f"session {session.id} was pending: stopped before it ran")
    else:
        click.echo(f"session {session.id} is running: stop requested{again}; its worker will finish it as stopped")


def _check_finished(ctx, param, values):
    live = [v for v in values if v not in FINISHED]
    if live:
        raise click.BadParameter(f"cleanup removes finished sessions only ({', '.join(FINISHED)}), "
                                 f"not {', '.join(live)}", ctx, param)
    return values


@sessions.command("cleanup")
@click.option("--older-than", type=AGE,
              help="remove sessions finished longer ago than this (e.g. 7d; 0s: every finished session); "
                   "default: the retention settings")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), callback=_check_finished,
              metavar=f"[{'|'.join(FINISHED)}]", help="only this finished state (repeatable); default: all")
@click.option("--dry-run", is_flag=True, help="count what would be removed, remove nothing")
@click.option("--json", "as_json", is_flag=True, help="print the counts as JSON")
def cleanup_sessions(older_than, states, dry_run, as_json):
    """Remove finished sessions (with their logs) past their retention; usage rollups are kept.

    Without --older-than, RUNBOARD_RETENTION and its per-state overrides
    (RUNBOARD_RETENTION_COMPLETED, _FAILED, _STOPPED) decide."""
    repository = _repository()
    settings = current_app.config["RUNBOARD"]
    wanted = sorted(set(states)) or FINISHED
    ages = {state: settings.retention_for(state) if older_than is None else older_than for state in wanted}
    with domain_errors():
        if older_than is None and not states:
            counts = apply_retention(repository, settings, dry_run=dry_run)
        else:       # one call per state: each state may be kept for a different time
            found = [repository.cleanup(ages[state], states=[state], dry_run=dry_run) for state in wanted]
            counts = CleanupCounts(sum(c.sessions for c in found), sum(c.log_entries for c in found))
    if as_json:
        return echo_json({"sessions": counts.sessions, "log_entries": counts.log_entries, "dry_run": dry_run})
    which = "" if wanted == FINISHED else "/".join(wanted) + " "
    if older_than is not None and not older_than:
        rule = f"every finished {which}session"
    elif len(set(ages.values())) == 1:
        rule = f"{which}sessions finished over {show_duration(ages[wanted[0]])} ago"
    else:
        rule = "retention: " + ", ".join(f"{state} {show_duration(age)}" for state, age in ages.items())
    click.echo(f"{'would remove' if dry_run else 'removed'} {plural(counts.sessions, 'session', 'sessions')} "
               f"and {plural(counts.log_entries, 'log entry', 'log entries')} ({rule})")


@sessions.command("sweep")
@click.option("--timeout", type=DURATION, help="heartbeat age that counts as lost; default: RUNBOARD_HEARTBEAT_TIMEOUT")
@click.option("--json", "as_json", is_flag=True, help='print {"failed": [ids]}')
def sweep_sessions(timeout, as_json):
    """Fail running sessions whose heartbeat is older than the timeout ("heartbeat lost"),
    and, with the threads executor, queued sessions whose process died ("runner lost")."""
    timeout = timeout or current_app.config["RUNBOARD"].heartbeat_timeout
    swept = sweep_lost(_repository(), current_app.config["RUNBOARD"], get_kinds().names(), timeout)
    failed = swept.heartbeat_lost + swept.runner_lost
    if as_json:
        return echo_json({"failed": failed})
    for session_id in swept.heartbeat_lost:
        click.echo(f"{session_id} failed: heartbeat lost")
    for session_id in swept.runner_lost:
        click.echo(f"{session_id} failed: runner lost")
    if failed:
        click.echo(f"failed {plural(len(failed), 'session', 'sessions')} silent for more than "
                   f"{show_duration(timeout)}")
    else:
        click.echo("no running session has lost its heartbeat")


@usage.command("report")
@click.option("--by", type=click.Choice(GROUPINGS), default="owner", show_default=True)
@click.option("--since", type=Since(), help="from this time on: 7d (ago), 2026-11-01 or 2026-11-01T09:00:00Z")
@click.option("--json", "as_json", is_flag=True, help="print the rows as a JSON array")
def usage_report(by, since, as_json):
    """Sessions, tokens and cost per owner, kind or engine (rollups survive session cleanup)."""
    repository = _repository()
    with domain_errors():
        rows = repository.usage(by=by, since=since)
    if as_json:
        return echo_json([{"key": r.key, "sessions": r.sessions, "tokens": r.tokens, "cost": r.cost}
                           for r in rows])
    if not rows:
        return click.echo("no usage recorded" + (f" since {iso(since)}" if since else ""))
    table([by.upper(), "SESSIONS", "TOKENS", "COST"],
           [[r.key or "(none)", f"{r.sessions:,}", f"{r.tokens:,}", f"{r.cost:.6f}"] for r in rows])

