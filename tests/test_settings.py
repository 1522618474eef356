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
    ("RUNBOARD_DATABASE_URL", "postgresql+asyncpg://user@host/db"),
    ("RUNBOARD_DATABASE_URL", "postgresql+psycopg://user@host:port/db"),
    ("RUNBOARD_DATABASE_URL", "sqlite:///"),
    ("RUNBOARD_DATABASE_URL", "sqlite:///:memory:"),
    ("RUNBOARD_HEARTBEAT_TIMEOUT", "1.5h"),
    ("RUNBOARD_RETENTION", "forever"),
    ("RUNBOARD_RETENTION", "0s"),
    ("RUNBOARD_HEARTBEAT_TIMEOUT", "60"),
    ("RUNBOARD_RUNNER_THREADS", "many"),
    ("RUNBOARD_RUNNER_THREADS", "0"),
    ("RUNBOARD_MAX_LOG_ENTRIES", "-5"),
    ("RUNBOARD_SCHEDULER", "sometimes"),
    ("RUNBOARD_ADMIN_TOKEN", "short"),
    ("RUNBOARD_SECRET_KEY", "short"),
    ("RUNBOARD_SECURE_COOKIES", "perhaps"),
])
def test_each_bad_variable_is_named_in_the_error(variable, value):
    with pytest.raises(ConfigurationError) as caught:
        load_settings({variable: value})
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)


def test_secrets_never_appear_in_the_settings_repr():
    settings = load_settings({"RUNBOARD_ADMIN_TOKEN": "a" * 32, "RUNBOARD_SECRET_KEY": "b" * 32})
    assert "a" * 32 not in repr(settings) and "b" * 32 not in repr(settings)


def test_the_duration_message_names_the_variable_and_shows_the_expected_form():
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"RUNBOARD_RETENTION": "x"})
    assert str(caught.value) == "RUNBOARD_RETENTION: malformed duration 'x' (use e.g. 30s, 15m, 7d)"


@pytest.mark.parametrize("url", [
    "mysql://root:hunter2-secret@db/x",
    "postgresql+psycopg://root:hunter2-secret@db:port/x",
])
def test_database_url_errors_never_repeat_the_password(url):
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"RUNBOARD_DATABASE_URL": url})
    assert str(caught.value).startswith("RUNBOARD_DATABASE_URL: ")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url, store", [
    ("memory://", "memory"), ("sqlite:///runboard.db", "sqlite"), ("sqlite:////tmp/x.db", "sqlite"),
    ("postgresql+psycopg://u@h/db", "postgresql"), ("postgresql://u@h/db", "postgresql"),
])
def test_each_supported_scheme_names_its_store(url, store):
    assert load_settings({"RUNBOARD_DATABASE_URL": url}).store == store


def test_empty_variables_count_as_unset():
    assert load_settings({"RUNBOARD_RETENTION": "", "RUNBOARD_SCHEDULER": ""}).retention == timedelta(days=7)


def test_scheduler_accepts_on_and_off_in_any_case():
    assert load_settings({"RUNBOARD_SCHEDULER": " OFF "}).scheduler == "off"


def test_a_duration_past_a_hundred_years_is_refused_by_name():
    from repositories.errors import ConfigurationError
    from webapp.settings import load_settings

    with pytest.raises(ConfigurationError) as caught:
        load_settings({"RUNBOARD_RETENTION": "99999999d"})
    assert str(caught.value).startswith("RUNBOARD_RETENTION: ")
