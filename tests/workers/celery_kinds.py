"""Kinds the Celery tests load through ``RUNBOARD_KINDS=celery_kinds:KINDS`` (this folder is
on the web app's and the workers' PYTHONPATH): jobs that run until told to stop, so a
test can stop, kill or shut down a worker while one runs."""
from __future__ import annotations

import time

from webapp.runner import JobKind, Params


class HoldParams(Params):
    seconds: float = 60.0


def hold(context, params: HoldParams) -> dict:
    """Report once a tick until stopped (or ``seconds`` pass): a job that is always mid-run."""
    started, ticks = time.monotonic(), 0
    while time.monotonic() - started < params.seconds:
        ticks += 1
        context.progress(current=ticks, step="holding")
        if context.should_stop():
            return {"ticks": ticks, "partial": True}
        time.sleep(0.02)
    return {"ticks": ticks}


KINDS = [JobKind("celery_test.hold", hold, HoldParams, "Runs until stopped")]
