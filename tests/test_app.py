"""The app factory, /healthz, the error shape and the security headers."""
import pytest

from repositories.errors import ConfigurationError
from webapp import create_app
from webapp.store import close_repository, get_repository


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
