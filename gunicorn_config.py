"""Gunicorn settings, validated in the master before any worker is forked.

Every check ends start-up with ONE line on stderr and exit status 2, so a bad deployment
fails loudly once instead of crash-looping workers (see ``webapp/preflight.py``).

Workers default to 2 on SQL stores (SQLite in WAL mode and PostgreSQL are both safe
across processes) and to 1 on ``memory://``, which refuses more than one.
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


def _on_memory_store() -> bool:
    return os.environ.get("RUNBOARD_DATABASE_URL", "").strip().startswith("memory:")


workers = _positive_int("WEB_CONCURRENCY", 1 if _on_memory_store() else 2)
threads = _positive_int("GUNICORN_THREADS", 4)
worker_class = "gthread"
bind = os.environ.get("RUNBOARD_BIND", "127.0.0.1:8000")
timeout = 60
graceful_timeout = 30
accesslog = "-"
# Never log query strings' secrets: the access log shows method, path and status only.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'

try:
    from webapp.preflight import check_startup, check_workers

    _settings = check_startup(os.environ, workers)
except ConfigurationError as exc:
    _fail(str(exc))


def on_starting(server):
    """``-w``/``--workers`` on the command line or in GUNICORN_CMD_ARGS override this file,
    so the worker count is checked again once gunicorn has settled it."""
    source = "WEB_CONCURRENCY" if server.cfg.workers == workers else "--workers"
    try:
        check_workers(_settings, server.cfg.workers, source)
    except ConfigurationError as exc:
        _fail(str(exc))


def when_ready(server):
    """Once, in the master, before any worker serves: a first start with no admin login
    creates ``admin`` (password printed once, or RUNBOARD_ADMIN_PASSWORD)."""
    from webapp.admin.bootstrap import ensure_first_admin

    try:
        ensure_first_admin(_settings)
    except Exception as exc:  # noqa: BLE001 - e.g. `flask db upgrade` not run yet; the panel explains
        server.log.warning("runboard: could not create the first admin login: %s", str(exc).splitlines()[0][:200])


def nworkers_changed(server, new_value, old_value):
    """A TTIN signal must not give the memory store a second process either (the first
    call, while gunicorn sets itself up, is left to ``on_starting``)."""
    if old_value is not None and _settings.store == "memory" and new_value > 1:
        server.log.error("runboard: the memory store lives inside one process; staying at 1 worker")
        server._num_workers = 1


def post_worker_init(worker):
    """The app is loaded in this worker: start its job runner and scheduler, whose
    messages go to gunicorn's error log."""
    import logging

    from webapp import start_background_work

    ours = logging.getLogger("runboard")
    ours.handlers = list(worker.log.error_log.handlers)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    start_background_work(worker.wsgi)


def worker_exit(server, worker):
    """Graceful exit (SIGTERM, a max-requests restart): running jobs are asked to stop and
    finished as ``stopped`` — within the graceful timeout, after which the master kills us."""
    from webapp.store import close_repository

    app = getattr(worker, "wsgi", None)
    if app is not None:
        close_repository(app, job_timeout=max(graceful_timeout - 5, 1))
