"""``flask tokens`` and ``flask users``: secrets shown once, stored hashed, revocable."""
from __future__ import annotations

from datetime import timedelta

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


def test_set_password_replaces_the_hash_ends_panel_sessions_and_refuses_bad_input(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "create", "root", "--admin", "--password-stdin"],
                         input="correct horse\n").exit_code == 0
    credentials = app.extensions["runboard.credentials"]
    secret = credentials.open_panel_session("root", lifetime=timedelta(hours=1))
    changed = runner.invoke(args=["users", "set-password", "root", "--password-stdin"], input="battery staple\n")
    assert changed.exit_code == 0 and "logged out" in changed.output
    assert credentials.verify_user("root", "battery staple").is_admin
    assert credentials.verify_user("root", "correct horse") is None
    assert credentials.find_panel_session(secret, idle=timedelta(hours=1)) is None
    unknown = runner.invoke(args=["users", "set-password", "nobody", "--password-stdin"], input="long enough\n")
    assert unknown.exit_code == 1 and "nobody" in unknown.output and "not found" in unknown.output
    short = runner.invoke(args=["users", "set-password", "root", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "password" in short.output
    assert credentials.verify_user("root", "battery staple") is not None


def test_token_commands_explain_that_the_memory_store_cannot_be_reached():
    app = create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off"})
    result = app.test_cli_runner().invoke(args=["tokens", "list"])
    assert result.exit_code != 0 and "RUNBOARD_ADMIN_TOKEN" in result.output


def _package_imports(path):
    """The webapp.cli modules a module imports (relative ``.x`` imports and absolute ones)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module} if node.module else {alias.name for alias in node.names}
            elif node.level == 0 and (node.module or "").startswith("webapp.cli"):
                found.add((node.module or "").removeprefix("webapp.cli").lstrip(".") or "__init__")
    return found


def test_the_cli_package_has_no_import_cycle():
    """``common`` imports no command module, the command modules import only ``common``,
    and only the package's ``register_cli`` knows them all."""
    from pathlib import Path

    import webapp.cli

    package = Path(webapp.cli.__file__).parent
    imports = {path.stem: _package_imports(path) for path in package.glob("*.py")}
    assert set(imports) >= {"__init__", "common", "credentials", "sessions", "db"}
    assert imports["common"] == set()
    for name, used in imports.items():
        if name != "__init__":
            assert used <= {"common"}, (name, used)
    assert not (Path(webapp.cli.__file__).parent.parent / "cli_sessions.py").exists()


@pytest.mark.parametrize("module", ["webapp.cli.sessions", "webapp.cli.credentials", "webapp.cli.common",
                                    "webapp.cli.db", "webapp.cli"])
def test_each_cli_module_imports_on_its_own(module):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_command_group_is_registered_on_both_kinds_of_store(app):
    from webapp import create_app as build

    memory = build({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off"})
    groups = {"tokens", "users", "sessions", "usage", "db"}
    for each in (app, memory):
        assert groups <= set(each.cli.commands), each
    close_repository(memory)
