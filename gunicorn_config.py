"""Gunicorn settings, validated in the master before any worker is forked.

Every check below ends start-up with ONE line on stderr and exit status 2, so a bad
deployment fails loudly once instead of crash-looping workers.
"""
import os
import sys

from repositories.errors import ConfigurationError


def _fail(message: str) -> None:
    print(f"runboard: configuration error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        _fail(f"{name}: must be a positive integer, not {raw[:40]!r}")
    return int(raw)


def _validate_runboard(workers: int) -> None:
    from sqlalchemy import text
    from webapp.settings import load_settings

    try:
        settings = load_settings(os.environ)
        if settings.store == "memory":
            if workers > 1:
                raise ConfigurationError(
                    f"WEB_CONCURRENCY: the memory store lives inside one process; run 1 worker "
                    f"(got {workers}) or use sqlite:/// or postgresql+psycopg:// in RUNBOARD_DATABASE_URL")
            return
        from repositories.sql import make_engine
        from webapp.store import check_reachable

        url = settings.database_url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return        # relative to the instance folder, created by the app on start
        engine = make_engine(url)
        try:
            check_reachable(engine)
        finally:
            engine.dispose()   # no connection may be inherited by forked workers
    except ConfigurationError as exc:
        _fail(str(exc))


workers = _positive_int("WEB_CONCURRENCY",
                        1 if os.environ.get("RUNBOARD_DATABASE_URL", "").startswith("memory:") else 2)
threads = _positive_int("GUNICORN_THREADS", 4)
worker_class = "gthread"
bind = os.environ.get("RUNBOARD_BIND", "127.0.0.1:8000")
timeout = 60
graceful_timeout = 30
accesslog = "-"
# Never log query strings' secrets: the access log shows method, path and status only.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

_validate_runboard(workers)
