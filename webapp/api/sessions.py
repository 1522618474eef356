"""Session routes: create, list, read, and the state transitions."""
from __future__ import annotations

from werkzeug.exceptions import Forbidden

from repositories.states import State

from .. import services
from ..runner import get_kinds
from ..store import get_repository
from . import bp
from . import schemas as s
from .auth import ADMIN, USER, WORKER, check_visible, visible_session
from .endpoints import endpoint
from .views import respond, session_json

STAFF = frozenset({ADMIN, WORKER})
READ = (400, 401, 404)
WRITE = (400, 401, 403, 404, 409, 413, 415)


@endpoint(bp, "POST", "/sessions", summary="Create a session", body=s.CreateSession,
          response=s.SessionOut, status=201, errors=(400, 401, 403, 413, 415))
def create_session(principal, body: s.CreateSession):
    """Users create registered kinds as themselves; staff create any kind for anyone.
    A registered kind is queued on this process's runner; its params are validated first,
    so a bad param stores nothing."""
    if principal.role == USER and body.owner not in (None, principal.owner):
        raise Forbidden("users create sessions as themselves only")
    owner = body.owner or principal.owner
    if body.kind in get_kinds() or principal.role == USER:     # users may create registered kinds only
        session = services.start_registered_run(body.kind, owner=owner, label=body.label, params=body.params,
                                       meta=body.meta)
    else:
        session = get_repository().create(kind=body.kind, owner=owner, label=body.label, params=body.params,
                                          meta=body.meta)
    return respond(session_json(session, principal), 201)


@endpoint(bp, "GET", "/sessions", summary="List sessions, newest first", query=s.ListQuery,
          response=s.SessionPage, errors=(400, 401, 403))
def list_sessions(principal, query: s.ListQuery):
    """Keyset-paginated; a user's listing is always restricted to their own sessions."""
    owner = query.owner
    if principal.role == USER:
        if owner not in (None, principal.owner):
            raise Forbidden("users may list only their own sessions")
        owner = principal.owner
    page = get_repository().list_sessions(state=query.state, owner=owner, kind=query.kind, q=query.q,
                                          limit=query.limit, cursor=query.cursor)
    return respond({"items": [session_json(x, principal) for x in page.items], "next_cursor": page.next_cursor})


@endpoint(bp, "GET", "/sessions/{session_id}", summary="Read one session", response=s.SessionOut,
          errors=READ)
def get_session(principal, session_id):
    return respond(session_json(visible_session(principal, session_id), principal))


@endpoint(bp, "POST", "/sessions/{session_id}/start", summary="Mark a pending session running",
          roles=STAFF, body=s.StartSession, body_required=False, response=s.SessionOut, errors=WRITE)
def start_session(principal, session_id, body: s.StartSession):
    """The optional body names who starts it (``worker_id``), kept on the session."""
    return respond(session_json(get_repository().start(session_id, worker_id=body.worker_id), principal))


@endpoint(bp, "POST", "/sessions/{session_id}/progress", summary="Report progress, meta and usage",
          roles=STAFF, body=s.ProgressReport, response=s.ProgressAckOut, errors=WRITE)
def report_progress(principal, session_id, body: s.ProgressReport):
    """Merged per RFC 7396; the answer tells the worker whether to stop."""
    usage = body.usage.model_dump() if body.usage else None
    ack = get_repository().report_progress(session_id, progress=body.progress, meta=body.meta, usage=usage)
    return respond({"state": ack.state.value, "stop_requested": ack.stop_requested})


@endpoint(bp, "POST", "/sessions/{session_id}/stop", summary="Cancel a pending session or ask a running one to stop",
          body=s.NoBody, body_required=False, response=s.SessionOut, errors=WRITE, also=(202,))
def stop_session(principal, session_id, body: s.NoBody):
    """202 while the worker still has to honour the request; 200 once it is stopped.
    Who asked, and when, goes into the session's log first (a full log never blocks a stop)."""
    check_visible(principal, session_id)
    session = services.stop_session(session_id, who=principal.owner, role=principal.role)
    return respond(session_json(session, principal), 202 if session.state is State.RUNNING else 200)


@endpoint(bp, "POST", "/sessions/{session_id}/finish", summary="Finish a session", roles=STAFF,
          body=s.Finish, response=s.SessionOut, errors=WRITE)
def finish_session(principal, session_id, body: s.Finish):
    session = get_repository().finish(session_id, body.state, result=body.result, error=body.error)
    return respond(session_json(session, principal))
