"""The OpenAPI 3.1 document, generated from the endpoint registry and the same pydantic
models that validate requests, so documentation and behaviour cannot drift."""
from __future__ import annotations

from flask import jsonify
from pydantic.json_schema import models_json_schema

from . import bp
from . import schemas as s
from .endpoints import REGISTRY

REASONS = {400: "Invalid input; the message names the field", 401: "Missing, unknown or revoked token",
           403: "The caller's role may not do this", 404: "No such session (or not yours)",
           409: "Illegal state transition, log cap reached, or the Idempotency-Key's first request still running", 413: "Body too large",
           415: "Body is not application/json",
           422: "Idempotency-Key already used with a different body"}
REF = "#/components/schemas/{model}"


def _models():
    models = {s.ErrorOut, s.Health}
    for ep in REGISTRY:
        models |= {m for m in (ep.body, ep.query, ep.response) if m is not None}
    return sorted(models, key=lambda m: m.__name__)


def build_document() -> dict:
    models = _models()
    refs, definitions = models_json_schema(
        [(m, "validation" if issubclass(m, (s.Body, s.Query)) else "serialization") for m in models],
        ref_template=REF)
    schemas = definitions.get("$defs", {})
    paths: dict[str, dict] = {}
    for ep in REGISTRY:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, schemas)
    paths["/healthz"] = {"get": {
        "summary": "Liveness and the configured store (served at the root, not under /api/v1)",
        "servers": [{"url": "/"}], "operationId": "healthz", "security": [],
        "responses": {"200": _json_response("OK", "Health")}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Runboard API", "version": "1.0.0",
                 "description": "Tracks long-running work. All errors are {\"error\": {\"code\", \"message\"}}."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }


def _json_response(description: str, model: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}


def _operation(ep, schemas) -> dict:
    operation: dict = {"summary": ep.summary, "operationId": ep.__dict__.get("name") or _operation_id(ep),
                       "parameters": [], "responses": {}}
    if ep.roles is None:
        operation["security"] = []
    else:
        operation["description"] = "Roles: " + ", ".join(sorted(ep.roles))
    if "{session_id}" in ep.path:
        operation["parameters"].append({"name": "session_id", "in": "path", "required": True,
                                        "schema": {"type": "string", "format": "uuid"}})
    if ep.query is not None:
        properties = schemas[ep.query.__name__]["properties"]
        required = set(schemas[ep.query.__name__].get("required", []))
        for name, schema in properties.items():
            operation["parameters"].append({"name": name, "in": "query", "required": name in required,
                                            "schema": schema})
    if ep.method == "POST" and ep.roles is not None:
        operation["parameters"].append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Repeats with this key (same token, method and path, within 24 hours) "
                           "get the first answer back and change nothing",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}})
        operation["responses"].setdefault("409", _json_response(REASONS[409], "ErrorOut"))
        operation["responses"]["422"] = _json_response(REASONS[422], "ErrorOut")
    if ep.body is not None:
        operation["requestBody"] = {"required": ep.body_required, "content": {
            "application/json": {"schema": {"$ref": REF.format(model=ep.body.__name__)}}}}
    for status in (ep.status, *ep.also):
        if ep.path.endswith("/download"):
            operation["responses"][str(status)] = {"description": "Attachment", "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {"$ref": REF.format(model=ep.response.__name__)}}}}
        else:
            operation["responses"][str(status)] = _json_response("OK", ep.response.__name__)
    for status in ep.errors:
        operation["responses"][str(status)] = _json_response(REASONS[status], "ErrorOut")
    return operation


def _operation_id(ep) -> str:
    words = [w for w in ep.path.replace("{session_id}", "by_id").split("/") if w]
    return ep.method.lower() + "_" + "_".join(words).replace("-", "_")


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI document (no authentication needed)."""
    return jsonify(build_document())
