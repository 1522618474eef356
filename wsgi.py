"""WSGI entry point for gunicorn and ``flask --app wsgi``.

Bad configuration ends the process with one line on stderr, never a traceback.  The
exit status is 4, gunicorn's APP_LOAD_ERROR: should a worker ever meet a problem the
master's start-up check (gunicorn_config.py) missed, the master halts instead of
respawning the worker forever.
"""
import sys

from repositories.errors import ConfigurationError
from webapp import create_app

APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigurationError as exc:
    print(f"runboard: configuration error: {exc}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)
