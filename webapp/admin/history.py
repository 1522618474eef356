"""History: finished sessions, newest first, keyset-paginated with list_sessions cursors.

The repository has no date filter, so the created-date range is applied to the rows the
cursor walks (newest first): rows newer than the range are skipped, and the walk ends at
the first row older than it.  Each page reads at most ``MAX_READS`` LIMIT queries, so a
page can come back short (with a "next" link) rather than scan the table.
"""
from __future__ import annotations

import dataclasses

from flask import render_template, request

from repositories.errors import ValidationError
from repositories.records import Session
from repositories.states import TERMINAL_STATES

from ..store import get_repository
from . import bp
from .filters import FINISHED, HistoryFilters

PAGE_SIZE = 50
MAX_READS = 4
NEWEST = "-"
MAX_TRAIL = 50                # cursors kept for "newer" links (older ones: back to newest)


@dataclasses.dataclass(frozen=True)
class HistoryPage:
    items: list[Session]
    next_cursor: str | None
    scanned: int


def finished_page(filters: HistoryFilters, cursor: str | None, size: int = PAGE_SIZE) -> HistoryPage:
    """Each read asks for only as many rows as the page still lacks, so every row read is
    either shown or skipped and the last one read is exactly where the next page starts."""
    repository, items, scanned = get_repository(), [], 0
    for _ in range(MAX_READS):
        page = repository.list_sessions(state=filters.state or None, states=TERMINAL_STATES,
                                        owner=filters.owner or None, kind=filters.kind or None,
                                        q=filters.q or None, limit=size - len(items), cursor=cursor)
        scanned += len(page.items)
        for session in page.items:
            place = filters.created_in_range(session)
            if place < 0:
                return HistoryPage(items, None, scanned)      # older than the range: done
            if place == 0 and session.state in TERMINAL_STATES:
                items.append(session)
        cursor = page.next_cursor
        if cursor is None or len(items) >= size:
            break
    return HistoryPage(items, cursor, scanned)


@bp.get("/history")
def history():
    """``cursor`` is where this page starts; ``trail`` the starts of the newer pages."""
    filters = HistoryFilters.from_args(request.args)
    cursor = request.args.get("cursor") or None
    trail = [c for c in (request.args.get("trail") or "").split(".") if c][-MAX_TRAIL:]
    try:
        page = finished_page(filters, cursor)
    except ValidationError:                   # a hand-edited cursor: start from the newest
        cursor, trail = None, []
        page = finished_page(filters, None)
        filters = dataclasses.replace(filters, problems=filters.problems + ("cursor: malformed; showing the newest",))
    newer = None
    if trail:                                 # "-" stands for the first (newest) page
        newer = {"cursor": "" if trail[-1] == NEWEST else trail[-1], "trail": ".".join(trail[:-1])}
    older = {"cursor": page.next_cursor, "trail": ".".join(trail + [cursor or NEWEST])} if page.next_cursor else None
    return render_template("admin/history.html", page=page, filters=filters, newer=newer, older=older,
                           states=FINISHED, first_page=cursor is None)
