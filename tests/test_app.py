"""The app factory, /healthz, the error shape and the security headers."""
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

from repositories import errors
from repositories.errors import ConfigurationError
from webapp import create_app
from webapp.errors import STATUS_BY_CODE
from webapp.extensions import db
from webapp.store import close_repository, get_repository

MEMORY = {"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off", "TESTING": True}


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def app(request):
    url = {"memory": lambda: "memory://",
           "sqlite": lambda: request.getfixturevalue("sqlite_url"),
           "postgresql": lambda: request.getfixturevalue("postgres_url")}[request.param]()
    app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off", "TESTING": True})
    yield app
    close_repository(app)


def test_healthz_names_the_configured_store(app, request):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "store": request.node.callspec.params["app"]}


def test_unknown_routes_answer_in_the_error_shape(app):
    response = app.test_client().get("/no/such/page")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_wrong_method_is_a_405_in_the_error_shape(app):
    response = app.test_client().post("/healthz")
    assert response.status_code == 405
    assert set(response.json) == {"error"}


def test_every_response_carries_security_headers(app):
    response = app.test_client().get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_the_repository_hangs_on_the_app_not_on_a_global(app):
    other = create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off"})
    with app.app_context():
        first = get_repository()
    with other.app_context():
        assert get_repository() is not first


def test_bad_configuration_raises_one_line_naming_the_variable():
    with pytest.raises(ConfigurationError, match=r"^RUNBOARD_HEARTBEAT_TIMEOUT: "):
        create_app({"RUNBOARD_HEARTBEAT_TIMEOUT": "soon"})


def test_an_unreachable_database_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match=r"^RUNBOARD_DATABASE_URL: database unreachable"):
        create_app({"RUNBOARD_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/none"})


def test_an_unreachable_database_never_shows_its_password():
    with pytest.raises(ConfigurationError) as caught:
        create_app({"RUNBOARD_DATABASE_URL": "postgresql+psycopg://postgres:hunter2-secret@127.0.0.1:1/x"})
    assert "hunter2" not in str(caught.value)


@pytest.fixture
def memory_app():
    app = create_app(MEMORY)
    yield app
    close_repository(app)


def _raising_route(app, exc: Exception):
    def boom():
        raise exc
    app.add_url_rule("/boom", "boom", boom)
    return app.test_client().get("/boom")


@pytest.mark.parametrize("exc, status, code", [
    (errors.ValidationError("label", "too long"), 400, "validation_error"),
    (errors.SessionNotFound("abc"), 404, "not_found"),
    (errors.InvalidTransition("abc", "completed", "start"), 409, "invalid_transition"),
    (errors.LogLimitExceeded("abc", 10, 1, 10), 409, "log_limit_exceeded"),
])
def test_domain_errors_become_their_status_in_the_error_shape(memory_app, exc, status, code):
    response = _raising_route(memory_app, exc)
    assert response.status_code == status
    assert response.json == {"error": {"code": code, "message": exc.message, **exc.details()}}
    if code == "log_limit_exceeded":
        assert exc.details() == {"stored": 10, "limit": 10}


def test_every_domain_error_a_request_can_meet_has_a_status():
    """ConfigurationError is raised at start-up only, before any request."""
    codes = {cls.code for cls in _subclasses(errors.RunboardError)} - {"error", "configuration_error"}
    assert codes <= set(STATUS_BY_CODE)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@pytest.mark.parametrize("exc", [RuntimeError("secret internals at /srv/x.py"),
                                 errors.ConfigurationError("RUNBOARD_X: raised mid-request")])
def test_unexpected_errors_are_a_bare_500_without_internals(memory_app, exc):
    response = _raising_route(memory_app, exc)
    assert response.status_code == 500
    assert response.json == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert b"Traceback" not in response.data and b"internals" not in response.data


def test_error_responses_carry_the_security_headers_too(memory_app):
    response = _raising_route(memory_app, RuntimeError("x"))
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"]


def test_session_cookies_are_http_only_and_lax_and_secure_on_request():
    assert {k: create_app(MEMORY).config[k] for k in ("SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE",
            "SESSION_COOKIE_SECURE")} == {"SESSION_COOKIE_HTTPONLY": True,
                                          "SESSION_COOKIE_SAMESITE": "Lax", "SESSION_COOKIE_SECURE": False}
    secure = create_app({**MEMORY, "RUNBOARD_SECURE_COOKIES": "true"})
    assert secure.config["SESSION_COOKIE_SECURE"] is True
    assert "max-age" in secure.test_client().get("/healthz").headers["Strict-Transport-Security"]


def test_without_a_configured_secret_key_every_app_shares_one_generated_key():
    first, second = create_app(MEMORY), create_app(MEMORY)
    assert len(first.secret_key) >= 32 and first.secret_key == second.secret_key
    assert create_app({**MEMORY, "RUNBOARD_SECRET_KEY": "k" * 32}).secret_key == "k" * 32


def test_a_relative_sqlite_path_lives_in_the_instance_folder():
    name = f"test-{uuid.uuid4().hex}.db"
    app = create_app({"RUNBOARD_DATABASE_URL": f"sqlite:///{name}", "RUNBOARD_SCHEDULER": "off"})
    path = Path(app.instance_path, name)
    try:
        with app.app_context():
            assert Path(make_url(str(db.engine.url)).database) == path
        assert path.exists()
    finally:
        close_repository(app)
        for leftover in path.parent.glob(f"{name}*"):
            leftover.unlink()


def test_db_upgrade_on_the_memory_store_says_there_is_nothing_to_migrate(memory_app):
    result = memory_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0
    assert "nothing to upgrade" in result.output


def test_the_apps_sqlite_connections_all_run_in_wal_with_our_settings(sqlite_url):
    """The pool keeps the connection the start-up reachability check opens, so the store's
    listeners must be installed before it: a connection made without them would run in
    rollback-journal mode with a full fsync per commit and no casefolding label search."""
    app = create_app({"RUNBOARD_DATABASE_URL": sqlite_url, "RUNBOARD_SCHEDULER": "off", "TESTING": True})
    try:
        repository = app.extensions["runboard"]
        repository.create_schema()
        with repository.transactions(write=False) as cursor:
            assert cursor.execute_text("PRAGMA journal_mode") == [("wal",)]
            assert cursor.execute_text("PRAGMA synchronous") == [(1,)]        # NORMAL
        session = repository.create(kind="k", owner="o", label="RÉSUMÉ.csv")
        assert [s.id for s in repository.list_sessions(q="résumé").items] == [session.id]
    finally:
        close_repository(app)


def test_the_root_url_sends_a_newcomer_to_the_panel(app):
    client = app.test_client()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.head("/").status_code == 302
    assert client.post("/").status_code == 405
