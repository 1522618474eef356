"""Merge patches (RFC 7396) waiting to be sent, composed so that fewer writes say the same.

A job may report progress or meta on every iteration of a hot loop; the context keeps the
patches here and sends them at its next flush.  Composing two patches into one is only
allowed when a single merge patch gives exactly what applying both in turn gives, whatever
is stored; otherwise the newer patch waits behind the older one and both are sent, in order.
"""
from __future__ import annotations

import copy

#: Progress keys the store derives when a report leaves them out (see
#: ``repositories.merge.merge_progress``); meta has none.
PROGRESS_DERIVED = ("percent",)


def compose(pending: dict, patch: dict, *, derived: tuple[str, ...] = ()) -> bool:
    """Fold ``patch`` into ``pending`` in place; False (nothing changed) when no single
    merge patch can say "apply pending, then patch", e.g. a scalar then an object.

    ``derived`` names top-level keys the store computes for a patch that omits them: a
    pending patch that sets one cannot absorb a patch that omits it, because the store
    would derive the key again after the second report but not after the composed one."""
    for key in derived:
        if key in pending and key not in patch:
            return False
    if not _composable(pending, patch):
        return False
    _fold(pending, patch)
    return True


def _composable(pending: dict, patch: dict) -> bool:
    for key, value in patch.items():
        if key not in pending:
            continue
        old = pending[key]
        if isinstance(value, dict) or isinstance(old, dict):
            if not (isinstance(value, dict) and isinstance(old, dict)) or not _composable(old, value):
                return False
    return True


def _fold(pending: dict, patch: dict) -> None:
    for key, value in patch.items():
        if type(value) in _SCALARS:
            pending[key] = value
        elif isinstance(value, dict) and isinstance(pending.get(key), dict):
            _fold(pending[key], value)
        else:
            pending[key] = copy.deepcopy(value)


#: Values that need no copy: a report is called in a job's hot loop, and a deep copy of
#: a number is most of what folding it costs.
_SCALARS = frozenset({int, float, str, bool, type(None)})


class PatchQueue:
    """The patches of one field (progress or meta) not yet written, oldest first.

    Not thread-safe: the context guards it with its own lock."""

    __slots__ = ("_derived", "_patches", "count")

    def __init__(self, *, derived: tuple[str, ...] = ()):
        self._derived = derived
        self._patches: list[dict] = []
        self.count = 0                         # len(self), read on every call of a hot loop

    def __len__(self) -> int:
        return self.count

    def add(self, patch: dict) -> int:
        """Queue ``patch`` after everything pending, composed into the newest when
        possible; the number of patches now pending."""
        if not (self._patches and compose(self._patches[-1], patch, derived=self._derived)):
            fresh: dict = {}
            _fold(fresh, patch)
            self._patches.append(fresh)
            self.count += 1
        return self.count

    def take(self) -> list[dict]:
        """Hand every pending patch to a writer, oldest first, and start empty."""
        patches, self._patches, self.count = self._patches, [], 0
        return patches
