"""Flask's JSON provider on orjson: responses such as the admin snapshot (about a thousand
session records) spend most of their time encoding.  orjson refuses integers beyond 64
bits, which clients may legitimately store in progress or meta, so those documents fall
back to the standard library encoder."""
from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import JSONProvider


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


class OrjsonProvider(JSONProvider):
    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return encode(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any):
        payload = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(encode(payload), mimetype=self.mimetype)
