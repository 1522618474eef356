"""The in-process job runner (SPEC §5): kinds, the run context, the pool and its monitor."""
from flask import Flask, current_app

from .kinds import JobContext, JobFailed, JobKind, KindRegistry, Params
from .runner import Runner

RUNNER_KEY = "runboard.runner"
KINDS_KEY = "runboard.kinds"

__all__ = ["JobContext", "JobFailed", "JobKind", "KindRegistry", "Params", "Runner", "RUNNER_KEY",
           "KINDS_KEY", "get_runner", "get_kinds", "install_runner"]


def install_runner(app: Flask, repository, settings, kinds: tuple[JobKind, ...]) -> None:
    """Hang the kinds and the runner on the app; the pool starts on first use (or when
    gunicorn's worker is up, see gunicorn_config.py)."""
    registry = KindRegistry(kinds)
    app.extensions[KINDS_KEY] = registry
    app.extensions[RUNNER_KEY] = Runner(repository, registry, threads=settings.runner_threads,
                                        stop_grace=settings.stop_grace,
                                        heartbeat_timeout=settings.heartbeat_timeout,
                                        max_log_entries=settings.max_log_entries)


def get_runner() -> Runner:
    return current_app.extensions[RUNNER_KEY]


def get_kinds() -> KindRegistry:
    return current_app.extensions[KINDS_KEY]
