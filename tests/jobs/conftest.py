"""A recording stand-in for the runner's JobContext, so jobs are tested without a runner."""
from __future__ import annotations

import pytest

LEVELS = ("debug", "info", "warning", "error")


class FakeContext:
    """Records every call; ``stop_after_checks=n`` answers should_stop() True from the
    (n+1)-th call on, ``stop_after_progress=n`` once n progress reports were made."""

    def __init__(self, stop_after_checks: int | None = None,
                 stop_after_progress: int | None = None):
        self.stop_after_checks = stop_after_checks
        self.stop_after_progress = stop_after_progress
        self.progress_reports: list[dict] = []
        self.logs: list[tuple[str, str, dict]] = []
        self.usage_reports: list[tuple[int, float]] = []
        self.stop_checks = 0

    def progress(self, **fields) -> None:
        self.progress_reports.append(fields)

    def log(self, level: str, message: str, **fields) -> None:
        assert level in LEVELS, level
        self.logs.append((level, message, fields))

    def usage(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        self.usage_reports.append((tokens, cost))

    def should_stop(self) -> bool:
        self.stop_checks += 1
        if self.stop_after_checks is not None and self.stop_checks > self.stop_after_checks:
            return True
        return (self.stop_after_progress is not None
                and len(self.progress_reports) >= self.stop_after_progress)

    def messages(self, level: str) -> list[str]:
        return [message for entry_level, message, _ in self.logs if entry_level == level]


@pytest.fixture
def make_ctx():
    return FakeContext
