"""Settings come from the environment, and every bad value is named in one line."""
from datetime import timedelta

import pytest

from repositories.errors import ConfigurationError
from webapp.settings import load_settings, parse_duration


@pytest.mark.parametrize("text, expected", [
    ("30s", timedelta(seconds=30)), ("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), (" 60s ", timedelta(seconds=60)),
])
def test_durations_parse_with_their_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d7", "1.5h", "7 days", "-1s", "1y"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_defaults_follow_the_spec():
    settings = load_settings({})
    assert settings.database_url == "sqlite:///runboard.db" and settings.store == "sqlite"
    assert settings.retention == timedelta(days=7)
    assert settings.heartbeat_timeout == timedelta(seconds=60)
    assert settings.runner_threads == 4 and settings.max_log_entries == 100_000
    assert settings.scheduler == "on" and settings.admin_token is None


def test_overrides_win_over_the_environment():
    settings = load_settings({"RUNBOARD_RETENTION": "1d"}, {"RUNBOARD_RETENTION": "2h"})
    assert settings.retention == timedelta(hours=2)


@pytest.mark.parametrize("variable, value", [
    ("RUNBOARD_DATABASE_URL", "mysql://root@localhost/x"),
    ("RUNBOARD_DATABASE_URL", "no-scheme-at-all"),
    ("RUNBOARD_RETENTION", "forever"),
    ("RUNBOARD_RETENTION", "0s"),
    ("RUNBOARD_HEARTBEAT_TIMEOUT", "60"),
    ("RUNBOARD_RUNNER_THREADS", "many"),
    ("RUNBOARD_RUNNER_THREADS", "0"),
    ("RUNBOARD_MAX_LOG_ENTRIES", "-5"),
    ("RUNBOARD_SCHEDULER", "sometimes"),
    ("RUNBOARD_ADMIN_TOKEN", "short"),
    ("RUNBOARD_SECRET_KEY", "short"),
])
def test_each_bad_variable_is_named_in_the_error(variable, value):
    with pytest.raises(ConfigurationError) as caught:
        load_settings({variable: value})
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)


def test_secrets_never_appear_in_the_settings_repr():
    settings = load_settings({"RUNBOARD_ADMIN_TOKEN": "a" * 32, "RUNBOARD_SECRET_KEY": "b" * 32})
    assert "a" * 32 not in repr(settings) and "b" * 32 not in repr(settings)
