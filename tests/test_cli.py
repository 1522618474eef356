"""``flask tokens`` and ``flask users``: secrets shown once, stored hashed, revocable."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from webapp import create_app
from webapp.extensions import db
from webapp.store import close_repository


@pytest.fixture
def app(sqlite_url):
    app = create_app({"RUNBOARD_DATABASE_URL": sqlite_url, "RUNBOARD_SCHEDULER": "off"})
    app.extensions["runboard"].create_schema()
    yield app
    close_repository(app)


def api_status(app, secret):
    response = app.test_client().get("/api/v1/sessions", headers={"Authorization": f"Bearer {secret}"})
    return response.status_code


def test_a_created_token_is_printed_once_works_and_is_stored_only_as_a_hash(app):
    result = app.test_cli_runner().invoke(args=["tokens", "create", "--role", "user", "--owner", "ana@example.com",
                                                "--name", "laptop"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("rb_") and len(secret) >= 40
    assert api_status(app, secret) == 200
    with app.app_context():
        stored = db.session.execute(text("SELECT * FROM api_tokens")).mappings().one()
    assert secret not in str(dict(stored)) and len(stored["token_hash"]) == 64
    listing = app.test_cli_runner().invoke(args=["tokens", "list"]).output
    assert "ana@example.com" in listing and "laptop" in listing and secret not in listing


def test_a_revoked_token_is_refused(app):
    runner = app.test_cli_runner()
    secret = runner.invoke(args=["tokens", "create", "--role", "admin", "--owner", "root"]).stdout.strip().splitlines()[-1]
    token_id = runner.invoke(args=["tokens", "list"]).output.split()[0]
    assert runner.invoke(args=["tokens", "revoke", token_id]).exit_code == 0
    assert api_status(app, secret) == 401
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output


@pytest.mark.parametrize("args, message", [
    (["tokens", "create", "--role", "root", "--owner", "x"], "Invalid value for '--role'"),
    (["tokens", "create", "--role", "user", "--owner", " "], "owner"),
    (["tokens", "revoke", "nope"], "not found"),
])
def test_bad_cli_input_is_a_clear_error(app, args, message):
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0 and message in result.output


def test_users_are_created_with_a_hashed_password_from_stdin(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "root", "--admin", "--password-stdin"], input="correct horse\n")
    assert result.exit_code == 0 and "admin" in result.output
    with app.app_context():
        stored = db.session.execute(text("SELECT password_hash FROM users")).scalar_one()
    assert "correct horse" not in stored and stored.startswith("scrypt:")
    credentials = app.extensions["runboard.credentials"]
    assert credentials.verify_user("root", "correct horse").is_admin
    assert credentials.verify_user("root", "wrong") is None
    again = runner.invoke(args=["users", "create", "root", "--password-stdin"], input="another pass\n")
    assert again.exit_code != 0 and "exists" in again.output
    short = runner.invoke(args=["users", "create", "eve", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "password" in short.output


def test_token_commands_explain_that_the_memory_store_cannot_be_reached():
    app = create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off"})
    result = app.test_cli_runner().invoke(args=["tokens", "list"])
    assert result.exit_code != 0 and "RUNBOARD_ADMIN_TOKEN" in result.output
