"""How long to wait before trying an unreachable server again.

Capped exponential backoff with jitter: many reporters that lost the same server at the
same moment (a database restart, a deploy) would otherwise come back in lock-step and hit
it together.  A ``Retry-After`` the server sent is a floor, never shortened by jitter.
"""
from __future__ import annotations

import random

FIRST_DELAY = 0.1
MAX_DELAY = 5.0


class Backoff:
    """Delays between attempts: about 0.1 s, doubling on each failure in a row, at most 5 s."""

    def __init__(self, *, first: float = FIRST_DELAY, cap: float = MAX_DELAY):
        self.first, self.cap = first, cap
        self.failures = 0

    def failed(self, retry_after: float | None = None) -> float:
        """Count a failure; the delay before the next attempt (between half and all of
        the exponential step, and never less than ``retry_after``)."""
        self.failures += 1
        step = min(self.first * 2 ** min(self.failures - 1, 32), self.cap)
        delay = step * random.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)

    def succeeded(self) -> int:
        """Reset; the number of failures that came before this success."""
        failures, self.failures = self.failures, 0
        return failures
