"""Liveness for load balancers and the README's first check."""
from flask import Blueprint, jsonify

from .store import get_repository

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Answer which store this process uses; no auth, no database round trip."""
    return jsonify(status="ok", store=get_repository().name)
