"""Opaque keyset cursors: the position of the last row seen, never an offset.

An offset shifts when sessions are inserted ahead of it; a key does not, so paging
newest-first stays stable while workers keep creating sessions.
"""
from __future__ import annotations

import base64
import binascii

from .errors import ValidationError

_PREFIX = "k1:"


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """Return the position encoded in ``cursor``; ``None`` means "from the newest"."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith(_PREFIX):
            position = int(raw[len(_PREFIX):])
            if 0 < position < 2**63:
                return position
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ValidationError("cursor", "malformed cursor; pass back next_cursor exactly as received")
