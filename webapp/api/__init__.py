"""The JSON API under /api/v1 (SPEC §4)."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import admin, logs, openapi, sessions  # noqa: E402,F401  (routes register on import)
