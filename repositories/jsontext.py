"""The one JSON codec: orjson's speed, the standard library's exactness.

orjson refuses integers beyond 64 bits when encoding and turns them into floats when
decoding, while clients may store such integers in progress or meta.  Those documents
(recognised by a run of 19+ digits, which also catches harmless cases inside strings)
go through ``json`` instead, so every stored value round-trips exactly.  The SQL stores
encode and decode their JSON columns with it, and the web app its responses.
"""
from __future__ import annotations

import json
import re

import orjson

_LONG_NUMBER = re.compile(r"\d{19,}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19,}")


def dumps_bytes(value) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def dumps(value) -> str:
    return dumps_bytes(value).decode()


def loads(text):
    if isinstance(text, str):
        return json.loads(text) if _LONG_NUMBER.search(text) else orjson.loads(text)
    if isinstance(text, memoryview):
        text = bytes(text)
    return json.loads(text) if _LONG_NUMBER_BYTES.search(text) else orjson.loads(text)
