"""Job kinds and runner doubles shared by the API and runner tests."""
from __future__ import annotations

import threading

import pydantic

from webapp.runner import RUNNER_KEY, JobKind, Runner


class AnyParams(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")


def idle_kind(name: str) -> JobKind:
    """A registered kind that accepts any params and does nothing."""
    return JobKind(name, lambda context, params: {"ok": True}, AnyParams)


class PausedRunner(Runner):
    """Accepts submissions and runs nothing: API tests see registered kinds stay pending."""

    def __init__(self, runner: Runner):
        super().__init__(runner.repository, runner.kinds, threads=1, stop_grace=_seconds(runner.stop_grace),
                         heartbeat_timeout=_seconds(60))
        self.submitted: list[str] = []

    def submit(self, session_id, kind, params):
        self.submitted.append(session_id)


def _seconds(value):
    from datetime import timedelta
    return timedelta(seconds=value)


def paused_runner(app) -> PausedRunner:
    runner = PausedRunner(app.extensions[RUNNER_KEY])
    app.extensions[RUNNER_KEY] = runner
    return runner


class Gate:
    """A job that waits for the test: ``released`` lets it return, and it honours stops."""

    def __init__(self):
        self.entered = threading.Event()
        self.released = threading.Event()

    def kind(self, name: str = "gated") -> JobKind:
        def run(context, params):
            context.progress(current=0, total=1, step="waiting")
            self.entered.set()
            while not self.released.wait(0.01):
                if context.should_stop():
                    return {"partial": True}
            return {"done": True}
        return JobKind(name, run, AnyParams)
