"""Helpers for the client's tests: a worker token, a server's stored view, and a virtualenv
holding nothing but ``client/`` (so a test proves the client needs no Flask, SQLAlchemy or
psycopg, and no file of the server's checkout)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from gunicorn_support import ROOT, flask_cli


def worker_token(server, owner: str = "pipeline") -> str:
    """A fresh ``worker`` token's secret (the CLI prints it last, once)."""
    return flask_cli(server.env, "tokens", "create", "--role", "worker", "--owner", owner).strip().splitlines()[-1]


def stored_logs(server, session_id: str) -> list[dict]:
    entries, after = [], 0
    while True:
        status, page = server.call("GET", f"/api/v1/sessions/{session_id}/logs?after={after}&limit=5000")
        assert status == 200, page
        entries += page["entries"]
        if not page["entries"]:
            return entries
        after = page["next_after"]


def sessions_of_kind(server, kind: str) -> list[dict]:
    status, page = server.call("GET", f"/api/v1/sessions?kind={kind}&limit=200")
    assert status == 200, page
    return page["items"]


#: A pin of requirements.txt: ``name==version``, extras dropped (pip refuses them in constraints).
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)")


def make_venv(path: Path, extras: str = "") -> Path:
    """A virtualenv with only ``client/`` (and its dependencies, ``client[extras]``'s too)
    installed; its python.  Held to the versions requirements.txt pins, so the client is
    tested against the same urllib3, orjson and Celery as the rest of the suite, not
    against whatever was released last."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, timeout=120)
    python = path / "bin" / "python"
    pins = [f"{m[1]}=={m[2]}" for m in map(PIN.match, (ROOT / "requirements.txt").read_text().splitlines()) if m]
    constraints = path / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    build = ROOT / "client" / "build"
    had_build = build.exists()
    try:
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "-c", str(constraints), str(ROOT / "client") + (f"[{extras}]" if extras else "")],
                              capture_output=True, text=True, timeout=600)
    finally:
        if not had_build:                      # setuptools builds in the source tree
            shutil.rmtree(build, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def client_env(server, token: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOARD_", "PYTHON"))}
    return {**env, "RUNBOARD_URL": server.base_url, "RUNBOARD_TOKEN": token, **extra}


def run_script(python: Path, code: str, env: dict, cwd: Path, *, timeout: float = 60.0,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in isolated mode (no PYTHONPATH, no user site, not the checkout's
    directory), from ``cwd``; its result."""
    script = cwd / "job.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run([str(python), "-I", str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def last_json(done: subprocess.CompletedProcess) -> dict:
    """The JSON object a script printed last on stdout."""
    return json.loads(done.stdout.strip().splitlines()[-1])
