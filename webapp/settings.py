"""Settings from the environment (SPEC §9), validated once at start-up.

Every problem becomes a ConfigurationError whose message starts with the variable's
name, so gunicorn, ``flask`` and tests can show one clear line instead of a traceback.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal, Mapping

from limits import parse as parse_limit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url

from repositories.errors import ConfigurationError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SCHEMES = ("memory://", "sqlite:///", "postgresql+psycopg://", "postgresql://")


MAX_DURATION = timedelta(days=36500)        # "now - duration" must stay a valid datetime


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``1h``, ``7d``, ``2w`` → timedelta, at most 36500 days; anything
    else is a ValueError."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"malformed duration {str(text)[:40]!r} (use e.g. 30s, 15m, 7d)")
    try:
        duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        duration = MAX_DURATION * 2
    if duration > MAX_DURATION:
        raise ValueError("must be at most 36500d")
    return duration


def store_kind(url: str) -> str:
    """"memory", "sqlite" or "postgresql" for a database URL."""
    return "memory" if url.startswith("memory:") else "sqlite" if url.startswith("sqlite:") else "postgresql"


class Settings(BaseModel):
    """Field aliases are the environment variable names, so errors can name them."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    database_url: str = Field("sqlite:///runboard.db", alias="RUNBOARD_DATABASE_URL")
    secret_key: str | None = Field(None, min_length=16, repr=False, alias="RUNBOARD_SECRET_KEY")
    retention: timedelta = Field(timedelta(days=7), alias="RUNBOARD_RETENTION")
    # Per-state overrides, e.g. keep failed sessions longer for post-mortems.
    retention_completed: timedelta | None = Field(None, alias="RUNBOARD_RETENTION_COMPLETED")
    retention_failed: timedelta | None = Field(None, alias="RUNBOARD_RETENTION_FAILED")
    retention_stopped: timedelta | None = Field(None, alias="RUNBOARD_RETENTION_STOPPED")
    heartbeat_timeout: timedelta = Field(timedelta(seconds=60), alias="RUNBOARD_HEARTBEAT_TIMEOUT")
    stop_grace: timedelta = Field(timedelta(seconds=30), alias="RUNBOARD_STOP_GRACE")
    runner_threads: int = Field(4, ge=1, le=256, alias="RUNBOARD_RUNNER_THREADS")
    max_log_entries: int = Field(100_000, ge=1, le=100_000_000, alias="RUNBOARD_MAX_LOG_ENTRIES")
    scheduler: Literal["on", "off"] = Field("on", alias="RUNBOARD_SCHEDULER")
    sweep_interval: timedelta = Field(timedelta(seconds=30), alias="RUNBOARD_SWEEP_INTERVAL")
    cleanup_interval: timedelta = Field(timedelta(minutes=15), alias="RUNBOARD_CLEANUP_INTERVAL")
    admin_token: str | None = Field(None, min_length=16, repr=False, alias="RUNBOARD_ADMIN_TOKEN")
    # The first admin's password (gunicorn's first start, or memory:// at app start).
    admin_password: str | None = Field(None, min_length=8, repr=False, alias="RUNBOARD_ADMIN_PASSWORD")
    secure_cookies: bool = Field(False, alias="RUNBOARD_SECURE_COOKIES")
    # A panel login ends after this long without a request, and this long after it began.
    panel_idle_timeout: timedelta = Field(timedelta(minutes=30), alias="RUNBOARD_PANEL_IDLE_TIMEOUT")
    panel_lifetime: timedelta = Field(timedelta(hours=12), alias="RUNBOARD_PANEL_LIFETIME")
    # Login POSTs per client address, in the ``limits`` notation ("10/minute", "50/hour").
    login_limit: str = Field("10/minute", alias="RUNBOARD_LOGIN_LIMIT")
    # Reverse proxies in front (nginx: 1) whose X-Forwarded-For/-Proto/-Host are believed.
    trusted_proxies: int = Field(0, ge=0, le=10, alias="RUNBOARD_TRUSTED_PROXIES")
    # Where registered kinds run (SPEC §5): this process's thread pool, or Celery workers.
    executor: Literal["threads", "celery"] = Field("threads", alias="RUNBOARD_EXECUTOR")
    # The broker URL may hold a password: never shown (repr) nor quoted in an error.
    celery_broker_url: str | None = Field(None, repr=False, alias="RUNBOARD_CELERY_BROKER_URL")
    # The queue Runboard's tasks go to; one per deployment sharing a broker.
    celery_queue: str = Field("runboard", pattern=r"^[A-Za-z0-9_.:-]{1,200}$", alias="RUNBOARD_CELERY_QUEUE")
    # Kinds beyond the built-ins: comma-separated ``module:attribute`` paths.
    kinds: str = Field("", max_length=4000, alias="RUNBOARD_KINDS")

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        """Messages quote the scheme at most, never the URL: it may hold a password."""
        if not value.startswith(SCHEMES):
            scheme = value.split(":", 1)[0][:20] if ":" in value else "(none)"
            raise ValueError(f"unsupported scheme {scheme!r}; use memory://, sqlite:///path.db "
                             "or postgresql+psycopg://user@host/db")
        if value.startswith("memory:"):
            return value
        try:
            url = make_url(value)
        except ValueError:
            raise ValueError("malformed URL (check the host, the port and how special characters "
                             "in the password are %-escaped)") from None
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("sqlite:/// needs a file path, e.g. sqlite:///runboard.db "
                             "(memory:// is the in-process store)")
        return value

    @field_validator("retention", "retention_completed", "retention_failed", "retention_stopped",
                     "heartbeat_timeout", "stop_grace", "sweep_interval", "cleanup_interval",
                     "panel_idle_timeout", "panel_lifetime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, timedelta):
            return value
        duration = parse_duration(value)
        if duration <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return duration

    @field_validator("login_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            item = parse_limit(value)
        except ValueError:
            raise ValueError(f"malformed limit {value[:40]!r} (use e.g. 10/minute)") from None
        if item.amount < 1:
            raise ValueError("must allow at least one attempt")
        return value

    @field_validator("scheduler", "executor", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("celery_broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
            scheme = value.split(":", 1)[0][:20] if ":" in value else "(none)"
            raise ValueError(f"unsupported scheme {scheme!r}; use redis://127.0.0.1:6379/0 "
                             "or amqp://guest:guest@127.0.0.1:5672//")
        return value

    @model_validator(mode="after")
    def _celery_needs(self) -> "Settings":
        """The Celery executor's workers share the store with the web app, through a broker."""
        if self.executor == "celery":
            if self.store == "memory":
                raise ValueError("RUNBOARD_EXECUTOR: the celery executor needs a SQL store shared with its "
                                 "workers; RUNBOARD_DATABASE_URL is memory:// (use sqlite:/// or postgresql://)")
            if not self.celery_broker_url:
                raise ValueError("RUNBOARD_CELERY_BROKER_URL: required by RUNBOARD_EXECUTOR=celery "
                                 "(e.g. redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//)")
        return self

    def retention_for(self, state: str) -> timedelta:
        """How long finished sessions in ``state`` are kept."""
        return getattr(self, f"retention_{state}", None) or self.retention

    @property
    def store(self) -> str:
        return store_kind(self.database_url)


def load_settings(environ: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read RUNBOARD_* values from ``environ``, then ``overrides`` (test config)."""
    names = {field.alias for field in Settings.model_fields.values()}
    values = {k: v for k, v in environ.items() if k in names and v != ""}
    values.update({k: v for k, v in (overrides or {}).items() if k in names})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:                      # a check across variables names its own
            raise ConfigurationError(message) from None
        variable = error["loc"][0]
        raise ConfigurationError(f"{variable}: {message}") from None
