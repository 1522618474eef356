"""Job kinds the in-process runner can execute.  Users may only create these kinds;
admins and workers may also create any other kind as an externally driven session."""
from __future__ import annotations

from typing import Callable

from flask import current_app

KINDS_KEY = "runboard.kinds"


class KindRegistry:
    def __init__(self):
        self._jobs: dict[str, Callable] = {}

    def register(self, kind: str, job: Callable) -> None:
        self._jobs[kind] = job

    def __contains__(self, kind: str) -> bool:
        return kind in self._jobs

    def names(self) -> list[str]:
        return sorted(self._jobs)


def get_kinds() -> KindRegistry:
    return current_app.extensions[KINDS_KEY]
