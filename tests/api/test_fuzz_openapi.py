"""Schema-driven fuzzing: schemathesis generates requests from /api/v1/openapi.json for
every operation, as an admin and as a plain user, on every store, and checks that nothing
answers 5xx and that every response conforms to the document."""
from __future__ import annotations

import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, settings

from api_support import ADMIN_TOKEN, USER_KIND
from webapp import create_app
from job_support import idle_kind, paused_runner
from webapp.store import CREDENTIALS_KEY, close_repository


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgresql"])
def fuzzed_app(request, tmp_path_factory):
    """One app per store for the whole module; PostgreSQL is the run's database, emptied."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "postgresql":
        url = request.getfixturevalue("empty_postgres")()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off",
                      "RUNBOARD_ADMIN_TOKEN": ADMIN_TOKEN})
    if request.param == "sqlite":
        app.extensions["runboard"].create_schema()
    paused_runner(app).kinds.register(idle_kind(USER_KIND))
    _, user_secret = app.extensions[CREDENTIALS_KEY].create_token(role="user", owner="fuzz@example.com")
    app.config["FUZZ_TOKENS"] = {"admin": ADMIN_TOKEN, "user": user_secret}
    # a few real sessions so generated ids sometimes hit, and states vary
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for owner in ("fuzz@example.com", "other@example.com"):
        session = client.post("/api/v1/sessions", json={"kind": USER_KIND, "owner": owner}, headers=headers).json
        client.post(f"/api/v1/sessions/{session['id']}/start", headers=headers)
    yield app
    close_repository(app)


@pytest.fixture(scope="module")
def api_schema(fuzzed_app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzzed_app)


schema = schemathesis.pytest.from_fixture("api_schema")


FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "25")), deadline=None, suppress_health_check=list(HealthCheck))


SCALARS = (str, int, float, bool, type(None))


def sent_as_generated(case) -> bool:
    """Whether the query reaches the app as schemathesis generated it.  Its WSGI transport
    hands the query to werkzeug's test client, which sends an object (or a list holding one)
    as its Python ``str()``: a negative ``owner={...}`` arrives as one valid owner string, and
    a 200 for it is right, not a "schema-violating request accepted"."""
    return all(isinstance(value, SCALARS) or (isinstance(value, list) and all(isinstance(v, SCALARS) for v in value))
               for value in (case.query or {}).values())


def call_as(case, app, role):
    token = app.config["FUZZ_TOKENS"][role]
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    response = case.call()
    assert response.status_code < 500, response.text[:500]
    # Authentication and authorisation have their own exhaustive matrix test; here the
    # checks are what the document promises about every response.
    promised = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
                checks.response_schema_conformance]
    if sent_as_generated(case):
        promised.append(checks.negative_data_rejection)
    case.validate_response(response, checks=promised)


@schema.exclude(path="/healthz").parametrize()   # served at the root; tested in test_app
@FUZZ
def test_no_admin_request_causes_a_5xx_and_responses_match_the_document(case, fuzzed_app):
    call_as(case, fuzzed_app, "admin")


@schema.exclude(path="/healthz").parametrize()   # served at the root; tested in test_app
@FUZZ
def test_no_user_request_causes_a_5xx_and_responses_match_the_document(case, fuzzed_app):
    call_as(case, fuzzed_app, "user")
