"""The one place where errors become HTTP responses.

Domain exceptions carry a ``code``; ``STATUS_BY_CODE`` maps each code to a status, and
every error body has SPEC's shape ``{"error": {"code", "message"}}``.  Unexpected
exceptions are logged with their traceback and answered with a bare 500: no internals
ever reach a client.
"""
from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from repositories.errors import RunboardError

STATUS_BY_CODE = {
    "validation_error": 400,
    "not_found": 404,
    "invalid_transition": 409,
    "log_limit_exceeded": 409,
}


def error_response(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RunboardError)
    def domain_error(exc: RunboardError):
        return error_response(STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = error_response(exc.code or 500, _http_code(exc), exc.description or exc.name)
        for key, value in exc.get_headers():      # WWW-Authenticate on 401, Allow on 405
            if key.lower() != "content-type":
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
