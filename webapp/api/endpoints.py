"""The ``endpoint`` decorator: one declaration per route gives authentication, role checks,
request parsing against the declared schemas, and the OpenAPI entry.

Routes receive parsed, validated models and stay thin; every refusal is raised as an
exception and rendered by ``webapp.errors``.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable

import pydantic
from flask import Blueprint, request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from repositories.errors import ValidationError
from repositories.validation import UUID_RE

from . import idempotency
from .auth import EVERYONE, authenticate, require_role

ONE_MIB = 1024 * 1024


@dataclasses.dataclass
class Endpoint:
    method: str
    path: str
    summary: str
    roles: frozenset[str] | None
    body: type[pydantic.BaseModel] | None
    query: type[pydantic.BaseModel] | None
    response: type[pydantic.BaseModel] | None
    status: int
    errors: tuple[int, ...]
    max_body: int
    media_type: str = "application/json"
    also: tuple[int, ...] = ()
    body_required: bool = True


REGISTRY: list[Endpoint] = []


def field_name(location: tuple) -> str:
    """("entries", 3, "message") -> "entries[3].message"."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def _validation_error(exc: pydantic.ValidationError, prefix: str = "") -> ValidationError:
    first = exc.errors(include_url=False)[0]
    location = tuple(p for p in first["loc"] if p not in ("function-after",))
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        message = "unknown field"
    else:
        message = first["msg"]
    return ValidationError(prefix + field_name(location) if location else (prefix.rstrip(".") or "body"),
                           message)


def read_body(max_body: int) -> bytes:
    """The raw body; 413 as soon as it is known to exceed ``max_body`` bytes.

    A plain Content-Length (every worker's report) is checked before reading and read
    straight from the WSGI stream: werkzeug's stream wrappers cost more than the read on
    the hottest endpoints.  A chunked body (the server terminates the stream) is read up to
    one byte past the limit, so an oversized one is a 413 too, not a truncated body."""
    environ = request.environ
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit() and "HTTP_TRANSFER_ENCODING" not in environ:
        if int(length) > max_body:
            raise RequestEntityTooLarge()
        return stream.read(int(length))
    if not environ.get("wsgi.input_terminated"):
        return b""             # no length and an unterminated stream: nothing is safe to read
    chunks, size = [], 0
    while size <= max_body:
        chunk = stream.read(min(64 * 1024, max_body + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > max_body:
        raise RequestEntityTooLarge()
    return b"".join(chunks)


def parse_body(model, max_body: int, *, required: bool = True):
    """The body validated into ``model``, and its raw bytes: 415 unless it is application/json, 400 naming the
    field for anything the model does not take, 413 past ``max_body``.

    An optional body (``required=False``) may also be absent: no bytes at all, whatever the
    content type, stand for ``model()``; sent, it is held to the same rules as any body."""
    if required:
        _check_json_content()
        raw = read_body(max_body)
    else:
        raw = read_body(max_body)
        if not raw:
            return model(), raw
        _check_json_content()
    try:
        return model.model_validate_json(raw), raw
    except pydantic.ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise ValidationError("body", "is not valid JSON") from None
        raise _validation_error(exc) from None


def _check_json_content() -> None:
    content_type = request.environ.get("CONTENT_TYPE", "")
    if content_type != "application/json" and request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")


def parse_query(model):
    for name, values in request.args.lists():
        if len(values) > 1:
            raise ValidationError(name, "given more than once")
    try:
        return model.model_validate(request.args.to_dict(flat=True))
    except pydantic.ValidationError as exc:
        raise _validation_error(exc) from None


def endpoint(blueprint: Blueprint, method: str, path: str, *, summary: str,
             roles: frozenset[str] | None = EVERYONE, body=None, query=None, response=None,
             status: int = 200, errors: tuple[int, ...] = (), max_body: int = ONE_MIB,
             media_type: str = "application/json", also: tuple[int, ...] = (),
             body_required: bool = True) -> Callable:
    """Register ``view`` at ``path``; ``roles=None`` means no authentication at all.

    Every POST declares its ``body`` model, even one that takes nothing (an empty model):
    a body nobody reads would otherwise be accepted whatever it holds.  ``body_required=False``
    makes it optional, both here and in the OpenAPI document; the view then gets
    ``body()`` (the defaults) when nothing was sent."""
    if method == "POST" and body is None:
        raise TypeError(f"POST {path} must declare its body (an empty model if it takes none)")

    def decorate(view):
        REGISTRY.append(Endpoint(method, path, summary, roles, body, query, response, status,
                                 errors, max_body, media_type, also, body_required))

        @functools.wraps(view)
        def handle(**path_args):
            arguments = dict(path_args)
            session_id = path_args.get("session_id")
            if session_id is not None and not UUID_RE.fullmatch(session_id):
                raise ValidationError("id", "is not a UUID")
            if roles is not None:
                principal = authenticate()
                require_role(principal, roles, session_id)
                arguments["principal"] = principal
            if query is not None:
                arguments["query"] = parse_query(query)
            raw = b""
            if body is not None:
                arguments["body"], raw = parse_body(body, max_body, required=body_required)
            if method == "POST" and roles is not None:
                key = idempotency.key_of(request)
                if key is not None:
                    return idempotency.once(arguments["principal"], key, raw, session_id,
                                            lambda: view(**arguments), creates_session=path == "/sessions")
            return view(**arguments)

        flask_path = re.sub(r"\{(\w+)\}", r"<\1>", path)
        blueprint.add_url_rule(flask_path, endpoint=view.__name__, view_func=handle, methods=[method])
        return handle

    return decorate
