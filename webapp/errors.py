"""The one place where errors become HTTP responses.

Domain exceptions carry a ``code``; ``STATUS_BY_CODE`` maps each code to a status, and
every error body has SPEC's shape ``{"error": {"code", "message"}}``.  HTTP errors raised
by werkzeug or the API (401, 403, 405, 413, 415, 429 …) keep their status and headers.
Unexpected exceptions — an unmapped domain code included — are logged with their
traceback and answered with a bare 500: no internals ever reach a client.
"""
from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from repositories.errors import RunboardError

STATUS_BY_CODE = {
    "validation_error": 400,
    "not_found": 404,
    "invalid_transition": 409,
    "log_limit_exceeded": 409,
    "idempotency_key_in_flight": 409,
    "idempotency_key_reused": 422,
}


def error_response(status: int, code: str, message: str, details: dict | None = None):
    """JSON everywhere, except an HTML page for the admin panel's pages (under /admin)."""
    if request and (request.path == "/admin" or request.path.startswith("/admin/")):
        return render_template("admin/error.html", status=status, code=code, message=message), status
    response = jsonify({"error": {"code": code, "message": message, **(details or {})}})
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RunboardError)
    def domain_error(exc: RunboardError):
        status = STATUS_BY_CODE.get(exc.code)
        if status is None:          # a domain error nobody mapped is our bug, not the client's
            return unexpected_error(exc)
        return error_response(status, exc.code, exc.message, exc.details())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = app.make_response(error_response(exc.code or 500, _http_code(exc), exc.description or exc.name))
        for key, value in exc.get_headers():      # WWW-Authenticate on 401, Allow on 405
            if key.lower() != "content-type":
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
