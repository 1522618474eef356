"""JSON renderings shared by the API routes (the only place that decides who sees cost)."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app

from ..jsonio import encode

from repositories.records import Session, Worker, iso

from .auth import Principal


def session_json(session: Session, principal: Principal) -> dict:
    return session.to_dict(include_cost=principal.sees_cost)


def respond(payload, status: int = 200):
    """A JSON response straight from the encoder (this is on every API request)."""
    return current_app.response_class(encode(payload), status=status, mimetype="application/json")


def stale_after() -> timedelta:
    """A worker silent for twice the heartbeat timeout is shown stale."""
    return current_app.config["RUNBOARD"].heartbeat_timeout * 2


def worker_json(worker: Worker, now: datetime, stale_after: timedelta) -> dict:
    return {"worker_id": worker.worker_id, "host": worker.host, "pid": worker.pid,
            "active": worker.active, "rss_bytes": worker.rss_bytes, "version": worker.version,
            "last_seen": iso(worker.last_seen), "started_at": iso(worker.started_at),
            "status": "stale" if now - worker.last_seen > stale_after else "ok"}
