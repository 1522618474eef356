"""Admin and worker views: the atomic snapshot, worker heartbeats, usage."""
from __future__ import annotations

from datetime import datetime


from repositories import validation as check
from repositories.errors import ValidationError
from repositories.records import iso, utcnow

from ..store import get_repository
from . import bp
from . import schemas as s
from .auth import ADMIN, USER, WORKER
from .endpoints import endpoint
from .views import respond, session_json, stale_after, worker_json

ADMINS = frozenset({ADMIN})


@endpoint(bp, "GET", "/admin/snapshot", summary="Counts and newest sessions per state, one atomic view",
          roles=ADMINS, query=s.SnapshotQuery, response=s.SnapshotOut, errors=(400, 401, 403))
def snapshot(principal, query: s.SnapshotQuery):
    taken = get_repository().snapshot(limit_per_state=query.limit)
    return respond({"taken_at": iso(taken.taken_at), "counts": taken.counts,
                    "sessions": {state: [session_json(x, principal) for x in bucket]
                                 for state, bucket in taken.sessions.items()}})


@endpoint(bp, "POST", "/workers/heartbeat", summary="A worker process says it is alive",
          roles=frozenset({ADMIN, WORKER}), body=s.WorkerHeartbeat, response=s.WorkerOut,
          errors=(400, 401, 403, 413, 415))
def worker_heartbeat(principal, body: s.WorkerHeartbeat):
    worker = get_repository().heartbeat_worker(**body.model_dump())
    return respond(worker_json(worker, worker.last_seen, stale_after()))


@endpoint(bp, "GET", "/workers", summary="Known workers and their heartbeat health", roles=ADMINS,
          response=s.WorkerList, errors=(401, 403))
def list_workers(principal):
    now = utcnow()
    return respond({"workers": [worker_json(w, now, stale_after()) for w in get_repository().list_workers()]})


@endpoint(bp, "GET", "/usage", summary="Token and cost totals by owner, kind or engine",
          query=s.UsageQuery, response=s.UsageOutList, errors=(400, 401))
def usage(principal, query: s.UsageQuery):
    """Users see only their own tokens, never cost."""
    owner = principal.owner if principal.role == USER else None
    rows = get_repository().usage(by=query.by, since=_parse_since(query.since), owner=owner)
    return respond({"rows": [{"key": r.key, "sessions": r.sessions, "tokens": r.tokens,
                              **({"cost": r.cost} if principal.sees_cost else {})} for r in rows]})


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("since", "must be an ISO-8601 time such as 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise ValidationError("since", "must include a time zone, e.g. a trailing Z")
    return check.check_time("since", moment)
