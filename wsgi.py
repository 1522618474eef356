"""WSGI entry point for gunicorn and ``flask --app wsgi``.

Bad configuration ends the process with one line on stderr and exit status 2, never a
traceback.
"""
import sys

from repositories.errors import ConfigurationError
from webapp import create_app

try:
    app = create_app()
except ConfigurationError as exc:
    print(f"runboard: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
