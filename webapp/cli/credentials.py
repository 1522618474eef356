"""``flask --app wsgi tokens …`` and ``users …``: credentials for the API and the panel."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from repositories.credentials import ROLES
from repositories.records import iso

from ..store import get_credentials
from .common import domain_errors, needs_sql

tokens = AppGroup("tokens", help="Create, list and revoke API tokens.")
users = AppGroup("users", help="Create logins for the admin panel and change their passwords.")


@tokens.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--owner", required=True, help="the user (email or name) the token acts as")
@click.option("--name", default="", help="a note to recognise the token by")
def create_token(role, owner, name):
    """Create a token and print its secret once; only a hash is stored."""
    needs_sql()
    with domain_errors():
        token, secret = get_credentials().create_token(role=role, owner=owner, name=name)
    click.echo(f"token {token.id} ({role}, owner {token.owner}) created; its secret is shown only now:",
               err=True)
    click.echo(secret)


@tokens.command("list")
def list_tokens():
    """List tokens (never their secrets)."""
    needs_sql()
    for token in get_credentials().list_tokens():
        status = f"revoked {iso(token.revoked_at)}" if token.revoked_at else "active"
        click.echo(f"{token.id}  {token.role:<6}  {token.owner}  {token.name or '-'}  "
                   f"created {iso(token.created_at)}  {status}")


@tokens.command("revoke")
@click.argument("token_id")
def revoke_token(token_id):
    """Revoke a token by its id; requests with it get 401 from now on."""
    needs_sql()
    with domain_errors():
        token = get_credentials().revoke_token(token_id)
    click.echo(f"token {token.id} revoked")


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="may use the admin panel")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def create_user(name, admin, password_stdin):
    """Create a login; the password comes from a prompt (or stdin) and is stored hashed."""
    needs_sql()
    password = _read_password(password_stdin)
    with domain_errors():
        user = get_credentials().create_user(name=name, password=password, is_admin=admin)
    click.echo(f"user {user.name} created{' (admin)' if user.is_admin else ''}")


@users.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def set_password(name, password_stdin):
    """Change a login's password; every panel session it has open ends now."""
    needs_sql()
    password = _read_password(password_stdin)
    with domain_errors():
        user = get_credentials().set_password(name, password)
    click.echo(f"password of {user.name} changed; its panel sessions are logged out")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)

