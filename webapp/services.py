"""Operations the API, the panel and the CLI share, so each is written once.

Each caller keeps its own presentation (a 202 or a 200, a flash message, a CLI line) and
its own access checks; what happens to the store and the runner is decided here.  The
functions raise the domain errors (SessionNotFound, InvalidTransition, ValidationError),
which every caller already knows how to show.
"""
from __future__ import annotations

from repositories.errors import InvalidTransition, LogLimitExceeded, ValidationError
from repositories.records import Session

from .runner import get_kinds, get_runner
from .store import get_repository

STOP_REQUEST_MESSAGE = "stop requested by "     # the panel finds when a stop was asked by this prefix


def start_registered_run(kind_name: str, *, owner: str, label: str = "", params: dict | None = None,
                         meta: dict | None = None) -> Session:
    """What POST /api/v1/sessions and the panel's demo form do for a registered kind.

    Params are validated by the kind's schema before anything is stored (a bad param
    stores nothing), then the session is created and queued on this process's runner.
    Raises ValidationError for an unregistered kind or a bad param (``params.<field>``)."""
    kind = get_kinds().get(kind_name)
    if kind is None:
        raise ValidationError("kind", f"unknown kind; registered kinds: {', '.join(get_kinds().names()) or 'none'}")
    validated = get_runner().validate(kind, params)
    repository, runner = get_repository(), get_runner()
    session = repository.create(kind=kind_name, owner=owner, label=label, params=params, meta=meta)
    # Under an Idempotency-Key the creation commits with the kept answer, after this returns.
    repository.after_commit(lambda: runner.submit(session.id, kind, validated))
    return session


def stop_session(session_id: str, *, who: str, role: str) -> Session:
    """Cancel a pending session, or ask a running one to stop; returns the stored session
    (STOPPED when it was pending, RUNNING with ``stop_requested`` otherwise).

    Who asked goes into the session's log first, so the log says why the job ended even
    when the job itself says nothing; then the store records the request, and this
    process's runner is told at once (a job on another process learns it from its next
    progress report).  Raises SessionNotFound, and InvalidTransition for a finished session."""
    _record_stop_request(session_id, who, role)
    session = get_repository().request_stop(session_id)
    runner = get_runner()
    get_repository().after_commit(lambda: runner.notify_stop(session.id))
    return session


def _record_stop_request(session_id: str, who: str, role: str) -> None:
    try:
        get_repository().append_logs(session_id, [{"level": "warning", "message": STOP_REQUEST_MESSAGE + who,
                                                   "fields": {"by": who, "role": role}}])
    except (InvalidTransition, LogLimitExceeded):
        pass        # finished already (request_stop then says so) or the log is full: never block a stop
