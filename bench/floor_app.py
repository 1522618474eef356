"""The floor of bench/api.py: a bare Flask app whose database endpoints do the least any
endpoint backed by that database can do — one fixed statement on the thread's own
connection, in autocommit, no authentication, no validation, no merge — served by
gunicorn with the same worker class, workers and threads as Runboard.

Its ratio to its own ``/healthz`` is the best ratio a Runboard endpoint could reach on this
machine with this database: whatever the database server and the driver cost per request
is in it.  Configured by ``FLOOR_DATABASE``: a SQLite file path or a PostgreSQL URL.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from datetime import datetime, timezone

import psycopg
from flask import Flask, jsonify

DATABASE = os.environ.get("FLOOR_DATABASE", "")
POSTGRES = DATABASE.startswith("postgresql")
MARK = "%s" if POSTGRES else "?"
UPDATE = (f"UPDATE sessions SET progress = {MARK}, heartbeat_at = {MARK}, updated_at = {MARK}"
          f" WHERE id = {MARK} RETURNING stop_requested")
SELECT = ("SELECT id, kind, label, owner, state, stop_requested, progress, meta, params, result, error,"
          " tokens, cost, created_at, started_at, updated_at, finished_at, heartbeat_at, log_count"
          f" FROM sessions WHERE id = {MARK}")

app = Flask(__name__)
_local = threading.local()
_sqlite_writer = threading.Lock()      # as Runboard's store: this process's writers queue here


def _connection():
    connection = getattr(_local, "connection", None)
    if connection is None:
        if POSTGRES:
            # Commits wait for the WAL flush, as every commit of Runboard's store does.
            connection = psycopg.connect(DATABASE, autocommit=True)
        else:
            connection = sqlite3.connect(DATABASE, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
        _local.connection = connection
    return connection


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.post("/floor/<session_id>/progress")
def progress(session_id):
    now = datetime.now(timezone.utc)
    stamp = now if POSTGRES else now.replace(tzinfo=None).isoformat(" ")
    with contextlib.nullcontext() if POSTGRES else _sqlite_writer:
        row = _connection().execute(UPDATE, ('{"current": 1, "total": 1000}', stamp, stamp, session_id)).fetchone()
    return jsonify(state="running", stop_requested=bool(row[0]))


@app.get("/floor/<session_id>")
def read(session_id):
    row = _connection().execute(SELECT, (session_id,)).fetchone()
    return jsonify(id=row[0], state=row[4], progress=row[6], log_count=row[18])

