"""Starting a run of a registered kind: what POST /api/v1/sessions does for such a kind.

Params are validated by the kind's schema before anything is stored (a bad param stores
nothing), then the session is created and queued on this process's runner.
"""
from __future__ import annotations

from repositories.errors import ValidationError
from repositories.records import Session

from .runner import get_kinds, get_runner
from .store import get_repository


def start_registered_run(kind_name: str, *, owner: str, label: str = "", params: dict | None = None,
                         meta: dict | None = None) -> Session:
    """Raises ValidationError for an unregistered kind or a bad param (``params.<field>``)."""
    kind = get_kinds().get(kind_name)
    if kind is None:
        raise ValidationError("kind", f"unknown kind; registered kinds: {', '.join(get_kinds().names()) or 'none'}")
    validated = get_runner().validate(kind, params)
    session = get_repository().create(kind=kind_name, owner=owner, label=label, params=params, meta=meta)
    get_runner().submit(session.id, kind, validated)
    return session
