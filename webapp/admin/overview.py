"""Overview: counts per state and the newest sessions per state from ONE snapshot, with
filters, a live-refresh fragment (ETag / 304) and the demo-run form."""
from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime

from flask import flash, redirect, render_template, request, url_for

from repositories.errors import ValidationError
from repositories.records import Session, iso
from repositories.states import State

from ..services import start_registered_run
from ..store import get_repository
from . import bp
from .auth import current_admin
from .live import fragment
from .filters import SessionFilters
from .forms import DemoRunForm

SNAPSHOT_LIMIT = 100          # newest sessions read per state; filters apply to these
SHOWN_PER_STATE = 25


@dataclasses.dataclass(frozen=True)
class Overview:
    taken_at: datetime
    counts: dict[str, int]
    rows: dict[str, list[Session]]
    filters: SessionFilters
    etag: str


def build_overview(filters: SessionFilters) -> Overview:
    """One snapshot: the counts (from state_counts) and the rows shown come from it alone.
    The ETag hashes the counts, the newest ``updated_at`` of each state's rows and the
    filters — any change to a shown session changes its ``updated_at``, so the tag."""
    snapshot = get_repository().snapshot(limit_per_state=SNAPSHOT_LIMIT)
    rows = {state.value: [s for s in snapshot.sessions[state.value] if filters.matches(s)][:SHOWN_PER_STATE]
            for state in State}
    newest = [max((iso(s.updated_at) for s in snapshot.sessions[state.value]), default="") for state in State]
    digest = hashlib.sha256(repr((sorted(snapshot.counts.items()), newest, filters.query())).encode())
    return Overview(snapshot.taken_at, snapshot.counts, rows, filters, f'"{digest.hexdigest()[:32]}"')


@bp.get("/")
def overview():
    """The overview page; without JavaScript, reloading it is the refresh."""
    view = build_overview(SessionFilters.from_args(request.args))
    return render_template("admin/overview.html", view=view, form=DemoRunForm())


@bp.get("/overview/fragment")
def overview_fragment():
    """The lists alone, for the live refresh: 304 when nothing shown has changed."""
    return fragment("admin/_overview_lists.html", build_overview(SessionFilters.from_args(request.args)))


@bp.post("/runs")
def start_demo_run():
    """Start a demo run as the logged-in admin, through the runner like the API does."""
    form = DemoRunForm()
    if not form.validate_on_submit():
        flash("The demo run was not started: " + "; ".join(
            f"{form[name].label.text}: {', '.join(errors)}" for name, errors in form.errors.items()), "error")
        return redirect(url_for("admin.overview"))
    try:
        session = start_registered_run(form.kind.data, owner=current_admin(), label=form.label.data or "",
                                       params=form.params(), meta={"source": "admin panel"})
    except ValidationError as exc:
        flash(f"The demo run was not started: {exc.message}", "error")
        return redirect(url_for("admin.overview"))
    flash(f"Started {session.kind} run {session.id}.", "info")
    return redirect(url_for("admin.session_detail", session_id=session.id))

