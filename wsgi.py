"""WSGI entry point for gunicorn and ``flask --app wsgi``, and ``wsgi:celery_app`` for
Celery workers.

Bad configuration ends the process with one line on stderr, never a traceback.  The
exit status is 4, gunicorn's APP_LOAD_ERROR: should a worker ever meet a problem the
master's start-up check (gunicorn_config.py) missed, the master halts instead of
respawning the worker forever.
"""
import sys

from repositories.errors import ConfigurationError
from webapp import create_app
from webapp.runner import RUNNER_KEY

APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigurationError as exc:
    print(f"runboard: configuration error: {exc}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)


def __getattr__(name: str):
    """``celery --app wsgi:celery_app worker`` loads the Celery app bound to ``app``; it
    exists only with RUNBOARD_EXECUTOR=celery, and says so otherwise."""
    if name != "celery_app":
        raise AttributeError(name)
    executor = app.extensions[RUNNER_KEY]
    if not hasattr(executor, "celery"):
        print("runboard: configuration error: RUNBOARD_EXECUTOR: Celery workers need RUNBOARD_EXECUTOR=celery "
              "(and RUNBOARD_CELERY_BROKER_URL), the same as the web app's", file=sys.stderr)
        sys.exit(APP_LOAD_ERROR)
    return executor.celery
