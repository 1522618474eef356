"""JSON Merge Patch (RFC 7396) and the derived ``percent``: the heart of "no lost fields".

The RFC algorithm is ten lines; pulling a dependency in for it would cost more than it
saves, and keeping it here lets both stores share exactly the same rules.
"""
from __future__ import annotations

import copy
from typing import Any


_IMMUTABLE = (str, int, float, bool, type(None))


def merge_patch(target: Any, patch: Any) -> Any:
    """Return ``target`` with ``patch`` applied per RFC 7396; neither argument is mutated.

    Keys absent from the patch are kept, keys set to ``None`` are removed, nested objects
    merge recursively, and any non-object patch value replaces the old value wholesale.
    """
    if not isinstance(patch, dict):
        return patch if isinstance(patch, _IMMUTABLE) else copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _derived_percent(current: Any, total: Any) -> float | None:
    if _is_number(current) and _is_number(total) and total > 0:
        return round(min(max(current / total * 100.0, 0.0), 100.0), 1)
    return None


def merge_progress(stored: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """Merge a progress report and derive ``percent`` when the report did not send one."""
    merged = merge_patch(stored, patch or {})
    if patch is None or "percent" not in patch:
        percent = _derived_percent(merged.get("current"), merged.get("total"))
        if percent is not None:
            merged["percent"] = percent
    return merged
