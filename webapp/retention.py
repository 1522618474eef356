"""Retention: finished sessions older than their state's retention are removed with their
logs (``RUNBOARD_RETENTION``, overridden per state by ``RUNBOARD_RETENTION_<STATE>``).

The store removes them in bounded chunks, each one atomic, so readers and writers are
never held up for long; usage rollups are kept; pending and running sessions are never
touched.  Used by the scheduler and by ``flask sessions cleanup``.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from repositories import SessionRepository
from repositories.records import CleanupCounts
from repositories.states import TERMINAL_STATES

from .settings import Settings


def retention_plan(settings: Settings) -> dict[timedelta, list[str]]:
    """Terminal states grouped by how long they are kept (one cleanup call per group)."""
    plan: dict[timedelta, list[str]] = defaultdict(list)
    for state in sorted(s.value for s in TERMINAL_STATES):
        plan[settings.retention_for(state)].append(state)
    return dict(plan)


def apply_retention(repository: SessionRepository, settings: Settings, *, dry_run: bool = False) -> CleanupCounts:
    """Remove (or, with ``dry_run``, count) what the retention settings say has expired."""
    sessions = entries = 0
    for older_than, states in retention_plan(settings).items():
        counts = repository.cleanup(older_than, states=states, dry_run=dry_run)
        sessions, entries = sessions + counts.sessions, entries + counts.log_entries
    return CleanupCounts(sessions, entries)
