"""A simulated batch run: phases of small jobs, some of which fail.

It exists to exercise everything a real pipeline reports — per-phase logs, job counters,
warnings, partial results when stopped and a failure that still leaves a result — with
work that is just sleeping, so a demo run's progress is visible in the admin panel.
"""
from __future__ import annotations

import random
import secrets
import time
from typing import Annotated

import pydantic

from webapp.runner.kinds import JobContext, JobFailed, Params

PhaseName = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=64)]
MAX_SEED = 2**63 - 1
SLEEP_STEP = 0.05  # a long simulated job still notices a stop within this many seconds
# Each failed job gets a warning up to this many per phase; beyond it the phase summary
# carries the count, so a large run cannot flood the log (and hit the session's log cap).
MAX_FAILURE_LOGS_PER_PHASE = 100


class BatchParams(Params):
    phases: Annotated[list[PhaseName], pydantic.Field(min_length=1, max_length=20)] = [
        "prepare", "process", "report"]
    jobs_per_phase: Annotated[int, pydantic.Field(ge=1, le=10_000)] = 10
    fail_rate: Annotated[float, pydantic.Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0
    seed: Annotated[int, pydantic.Field(ge=0, le=MAX_SEED)] | None = None
    job_seconds: Annotated[float, pydantic.Field(ge=0.0, le=10.0, allow_inf_nan=False)] = 0.05

    @pydantic.field_validator("phases")
    @classmethod
    def _unique(cls, phases: list[str]) -> list[str]:
        """Phases are reported by name, so two of the same name could not be told apart."""
        if len(set(phases)) != len(phases):
            raise ValueError("phase names must be unique")
        return phases


def _work(ctx: JobContext, seconds: float) -> bool:
    """Sleep ``seconds`` in short steps; False if a stop was requested meanwhile."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(SLEEP_STEP, remaining))
        if ctx.should_stop():
            return False
    return True


def run(ctx: JobContext, params: BatchParams) -> dict:
    """An unseeded run records the seed it drew, so the same failures can be replayed."""
    seed = params.seed if params.seed is not None else secrets.randbelow(2**53)
    rng = random.Random(seed)
    per_phase = params.jobs_per_phase
    counts = {"total_jobs": len(params.phases) * per_phase, "completed_jobs": 0,
              "failed_jobs": 0, "phases": [], "seed": seed}
    for name in params.phases:
        ctx.log("info", f"phase {name} started", phase=name)
        phase = {"name": name, "completed": 0, "failed": 0}
        counts["phases"].append(phase)
        for job in range(1, per_phase + 1):
            if ctx.should_stop() or not _work(ctx, params.job_seconds):
                ctx.log("info", f"stopped in phase {name}", phase=name)
                return {**counts, "stopped_in_phase": name}
            if rng.random() < params.fail_rate:
                phase["failed"] += 1
                counts["failed_jobs"] += 1
                if phase["failed"] <= MAX_FAILURE_LOGS_PER_PHASE:
                    ctx.log("warning", f"job {job} of phase {name} failed",
                            phase=name, job=job)
            else:
                phase["completed"] += 1
                counts["completed_jobs"] += 1
            done = counts["completed_jobs"] + counts["failed_jobs"]
            ctx.progress(phase=name, total_jobs=counts["total_jobs"], current=done,
                         completed_jobs=counts["completed_jobs"], total=counts["total_jobs"],
                         failed_jobs=counts["failed_jobs"], step=name)
        level = "error" if phase["failed"] == per_phase else "info"
        ctx.log(level, f"phase {name} finished: {phase['completed']} completed, "
                       f"{phase['failed']} failed", **phase)
        if phase["failed"] == per_phase:
            raise JobFailed(f"phase {name} failed: all {per_phase} jobs failed", result=counts)
    return counts
