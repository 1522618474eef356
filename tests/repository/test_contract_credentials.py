"""Panel sessions and the login throttle, on every store (SPEC §12 "Panel sessions")."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from repositories.errors import CredentialNotFound, ValidationError

IDLE, LIFETIME = timedelta(minutes=30), timedelta(hours=12)


@pytest.fixture
def admin(credentials):
    return credentials.create_user(name="ada", password="correct horse", is_admin=True)


def test_a_panel_session_lasts_until_it_is_closed(credentials, admin):
    secret = credentials.open_panel_session("ada", lifetime=LIFETIME)
    assert credentials.find_panel_session(secret, idle=IDLE) == admin
    credentials.close_panel_session(secret)
    assert credentials.find_panel_session(secret, idle=IDLE) is None
    credentials.close_panel_session(secret)                       # idempotent
    assert credentials.find_panel_session("not-a-session", idle=IDLE) is None


def test_a_password_change_ends_every_panel_session_of_that_user_only(credentials, admin):
    credentials.create_user(name="bob", password="another password", is_admin=True)
    first, second = (credentials.open_panel_session("ada", lifetime=LIFETIME) for _ in range(2))
    other = credentials.open_panel_session("bob", lifetime=LIFETIME)
    credentials.set_password("ada", "a new password")
    assert credentials.find_panel_session(first, idle=IDLE) is None
    assert credentials.find_panel_session(second, idle=IDLE) is None
    assert credentials.find_panel_session(other, idle=IDLE).name == "bob"
    assert credentials.verify_user("ada", "correct horse") is None
    assert credentials.verify_user("ada", "a new password") == admin


def test_set_password_refuses_an_unknown_name_and_a_short_password(credentials, admin):
    with pytest.raises(CredentialNotFound):
        credentials.set_password("nobody", "long enough")
    with pytest.raises(ValidationError):
        credentials.set_password("ada", "short")
    assert credentials.verify_user("ada", "correct horse") == admin


def test_a_panel_session_ends_after_its_idle_lifetime(credentials, admin, clock):
    secret = credentials.open_panel_session("ada", lifetime=LIFETIME)
    for _ in range(6):                                  # in use: 2 h of requests 20 min apart
        clock.advance(minutes=20)
        assert credentials.find_panel_session(secret, idle=IDLE) == admin
    clock.advance(minutes=30)
    assert credentials.find_panel_session(secret, idle=IDLE) is None
    clock.advance(seconds=-3600)                        # ended for good, not merely stale
    assert credentials.find_panel_session(secret, idle=IDLE) is None


def test_a_panel_session_ends_at_its_absolute_lifetime_however_busy(credentials, admin, clock):
    secret = credentials.open_panel_session("ada", lifetime=timedelta(hours=1))
    for _ in range(5):
        clock.advance(minutes=11)
        assert credentials.find_panel_session(secret, idle=IDLE) == admin
    clock.advance(minutes=6)
    assert credentials.find_panel_session(secret, idle=IDLE) is None


def test_the_throttle_counts_per_client_within_its_window(credentials, clock):
    window = timedelta(minutes=1)
    assert [credentials.count_login_attempt("10.0.0.1", limit=3, window=window) for _ in range(3)] == [None] * 3
    wait = credentials.count_login_attempt("10.0.0.1", limit=3, window=window)
    assert wait is not None and 1 <= wait <= 60
    assert credentials.count_login_attempt("10.0.0.2", limit=3, window=window) is None
    clock.advance(seconds=61)
    assert credentials.count_login_attempt("10.0.0.1", limit=3, window=window) is None


def test_the_throttle_admits_exactly_its_limit_from_many_threads(credentials):
    results, barrier = [], threading.Barrier(8)

    def attempts():
        barrier.wait()
        mine = [credentials.count_login_attempt("10.0.0.7", limit=20, window=timedelta(hours=1)) for _ in range(10)]
        results.extend(mine)

    threads = [threading.Thread(target=attempts) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80 and results.count(None) == 20
