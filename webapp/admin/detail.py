"""Session detail: metadata, progress, result, the live log tail, downloads and Stop."""
from __future__ import annotations

import dataclasses
from datetime import datetime

from flask import current_app, flash, jsonify, redirect, render_template, request, url_for

from repositories.errors import InvalidTransition, ValidationError
from repositories.records import LogEntry, Session, iso, utcnow
from repositories.states import State
from repositories.validation import LOG_LEVELS

from ..services import STOP_REQUEST_MESSAGE, stop_session as request_stop
from ..store import get_repository
from . import bp
from .auth import current_admin
from .live import fragment
from .forms import StopForm

TAIL = 200                    # entries shown on the page; the rest is in the downloads
POLL_LIMIT = 500


@dataclasses.dataclass(frozen=True)
class Detail:
    session: Session
    now: datetime
    stop_since: datetime | None       # when the (last) stop was requested, from the log
    stop_grace: float

    @property
    def waiting_for_stop(self) -> bool:
        return self.session.state is State.RUNNING and self.session.stop_requested

    @property
    def stop_elapsed(self) -> int | None:
        return None if self.stop_since is None else max(int((self.now - self.stop_since).total_seconds()), 0)

    @property
    def etag(self) -> str:
        return f'"{self.session.id}-{iso(self.session.updated_at)}-{self.stop_since is not None}"'


def level_filter(args) -> str:
    level = (args.get("level") or "debug").strip()
    return level if level in LOG_LEVELS else "debug"


def at_least(level: str):
    floor = LOG_LEVELS.index(level)
    return lambda entry: LOG_LEVELS.index(entry.level) >= floor if entry.level in LOG_LEVELS else True


def load_detail(session: Session, tail: list[LogEntry] | None = None) -> Detail:
    stop_since = None
    if session.stop_requested:
        entries = tail if tail is not None else _tail(session)
        stop_since = next((e.ts for e in reversed(entries) if e.message.startswith(STOP_REQUEST_MESSAGE)), None)
    return Detail(session, utcnow(), stop_since, current_app.config["RUNBOARD"].stop_grace.total_seconds())


def _tail(session: Session) -> list[LogEntry]:
    return get_repository().read_logs(session.id, after=max(session.log_count - TAIL, 0), limit=TAIL).entries


@bp.get("/sessions/<session_id>")
def session_detail(session_id):
    """The detail page with the newest log entries (at the chosen level and above); an
    unknown or malformed id is SessionNotFound, i.e. the 404 page."""
    session = get_repository().get(session_id)
    tail = _tail(session)
    level = level_filter(request.args)
    entries = [e for e in tail if at_least(level)(e)]
    return render_template("admin/detail.html", view=load_detail(session, tail), entries=entries,
                           level=level, levels=LOG_LEVELS, after=tail[-1].seq if tail else 0,
                           form=StopForm())


@bp.get("/sessions/<session_id>/summary")
def session_summary(session_id):
    """The state/progress/result block alone, for the live refresh (304 when unchanged)."""
    return fragment("admin/_session_summary.html", load_detail(get_repository().get(session_id)))


@bp.get("/sessions/<session_id>/logs")
def session_logs(session_id):
    """Entries after ``after`` (JSON) for the live tail; ``level`` keeps that level and above."""
    raw = request.args.get("after", "0")
    if not raw.isdigit() or len(raw) > 18:
        raise ValidationError("after", "must be a non-negative integer")
    page = get_repository().read_logs(session_id, after=int(raw), limit=POLL_LIMIT)
    keep = at_least(level_filter(request.args))
    session = get_repository().get(session_id)
    return jsonify({"entries": [{"seq": e.seq, "ts": iso(e.ts), "at": iso(e.at), "level": e.level, "message": e.message}
                                for e in page.entries if keep(e)],
                    "next_after": page.next_after, "state": session.state.value,
                    "more": len(page.entries) == POLL_LIMIT})


@bp.route("/sessions/<session_id>/stop", methods=["GET", "POST"])
def stop_session(session_id):
    """Without JavaScript the first POST (or a GET) shows a confirmation page; the
    confirmed POST logs who asked, then asks the store and this process's runner."""
    session = get_repository().get(session_id)
    form = StopForm()
    if request.method == "GET" or not form.validate_on_submit() or form.confirmed.data != "yes":
        # formdata=None: the detail page's form posts confirmed="", which would override "yes"
        return render_template("admin/stop_confirm.html", session=session,
                               form=StopForm(formdata=None, confirmed="yes"))
    try:
        stopped = request_stop(session_id, who=current_admin(), role="admin")
    except InvalidTransition as exc:
        flash(f"The session is already {exc.current}; nothing to stop.", "error")
        return redirect(url_for("admin.session_detail", session_id=session_id))
    # Only what stays true goes in the one-off banner: whether the job has acknowledged yet
    # is the live summary's to say (from the store), or a reload would show a stale claim.
    flash("Stop requested." if stopped.state is State.RUNNING
          else "The pending session was cancelled (stopped).", "info")
    return redirect(url_for("admin.session_detail", session_id=session_id))
