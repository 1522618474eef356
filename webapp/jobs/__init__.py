"""Job kinds that ship with Runboard; the runner registers ``BUILTIN_KINDS`` at start-up."""
from __future__ import annotations

from webapp.jobs import batch, monte_carlo
from webapp.jobs.batch import BatchParams
from webapp.jobs.monte_carlo import MonteCarloParams
from webapp.runner.kinds import JobKind

BUILTIN_KINDS: tuple[JobKind, ...] = (
    JobKind("monte_carlo", monte_carlo.run, MonteCarloParams,
            "Sample a normal, uniform or triangular distribution; mean, std_dev, percentiles"),
    JobKind("batch", batch.run, BatchParams,
            "Simulated phases of jobs with per-phase logs, job counters and failures"),
)

__all__ = ["BUILTIN_KINDS", "BatchParams", "MonteCarloParams"]
