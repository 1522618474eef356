"""Running registered kinds (SPEC §5): kinds, the run context, the runner and its monitor,
and the executors (``threads``: the runner's pool in this process; ``celery``: workers)."""
from flask import Flask, current_app

from .executor import Executor
from .kinds import JobContext, JobFailed, JobKind, KindRegistry, Params
from .runner import Runner

RUNNER_KEY = "runboard.runner"
KINDS_KEY = "runboard.kinds"

__all__ = ["Executor", "JobContext", "JobFailed", "JobKind", "KindRegistry", "Params", "Runner", "RUNNER_KEY",
           "KINDS_KEY", "get_runner", "get_kinds", "install_runner"]


def install_runner(app: Flask, repository, settings, kinds: tuple[JobKind, ...]) -> None:
    """Hang the kinds and the configured executor on the app.  The thread pool starts on
    first use (or when gunicorn's worker is up, see gunicorn_config.py); the Celery
    executor's app is ``wsgi:celery_app``, which its workers load."""
    registry = KindRegistry(kinds)
    app.extensions[KINDS_KEY] = registry
    if settings.executor == "celery":
        from .celery_executor import CeleryExecutor       # Celery is imported only when used

        app.extensions[RUNNER_KEY] = CeleryExecutor(app, repository, registry, settings)
        return
    app.extensions[RUNNER_KEY] = Runner.configured(repository, registry, settings, threads=settings.runner_threads)


def get_runner() -> Executor:
    return current_app.extensions[RUNNER_KEY]


def get_kinds() -> KindRegistry:
    return current_app.extensions[KINDS_KEY]
