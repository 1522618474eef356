"""Flask's JSON provider on the store's codec (``repositories.jsontext``): responses such as
the admin snapshot (about a thousand session records) spend most of their time encoding."""
from __future__ import annotations

from typing import Any

from flask.json.provider import JSONProvider

from repositories.jsontext import dumps, dumps_bytes, loads

encode = dumps_bytes


class OrjsonProvider(JSONProvider):
    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any):
        payload = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dumps_bytes(payload), mimetype=self.mimetype)
