"""The client's transport against a stub HTTP server of the test's own: what each answer
becomes for the reporting core (SPEC §10's failure handling), ``Retry-After`` honoured,
a server under a path, and a retry sent byte for byte as the first attempt."""
from __future__ import annotations

import email.utils
import http.server
import json
import socket
import threading
import time

import pytest

from runboard.http import HttpTransport
from runboard.transport import Op, Rejected, RetryLater, SessionGone


class Stub:
    """Answers every request with the next of ``answers`` (status, headers, body) and
    records what it got; an answer of None holds the request until ``release``."""

    def __init__(self, answers):
        self.answers, self.seen = list(answers), []
        self.released = threading.Event()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self._answer(b"")

            def do_POST(self):
                self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _answer(self, body):
                stub.seen.append((self.command, self.path, dict(self.headers), body))
                answer = stub.answers.pop(0)
                if answer is None:
                    stub.released.wait(10)
                    return
                status, headers, payload = answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub(request):
    made = []

    def make(*answers):
        made.append(Stub(answers))
        return made[-1]
    yield make
    for one in made:
        one.close()


def test_a_server_under_a_path_gets_the_api_path_below_it_with_token_and_key(stub):
    server = stub((201, {}, {"id": "s1"}))
    transport = HttpTransport(server.url + "/runboard/", "secret-token")
    op = Op("create", {"kind": "etl.nightly", "label": "x"})
    assert transport.send(None, op) == "s1"
    [(method, path, headers, body)] = server.seen
    assert (method, path) == ("POST", "/runboard/api/v1/sessions")
    assert headers["Authorization"] == "Bearer secret-token" and headers["Idempotency-Key"] == op.key
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"].startswith("runboard-client/")
    assert json.loads(body) == {"kind": "etl.nightly", "label": "x"}
    transport.close()


def test_a_retry_is_the_first_attempt_byte_for_byte(stub):
    server = stub((503, {}, {"error": {"code": "unavailable", "message": "busy"}}), (201, {}, {"first_seq": 1, "last_seq": 2}))
    transport = HttpTransport(server.url, "t")
    op = Op("logs", [{"level": "info", "message": "a", "fields": {}, "at": 1_700_000_000.25},
                     {"level": "info", "message": "b", "fields": {"n": 1}, "at": 1_700_000_000.5}])
    with pytest.raises(RetryLater, match="503 unavailable: busy"):
        transport.send("s1", op)
    assert transport.send("s1", op) == 2
    first, second = server.seen
    assert first[1] == second[1] == "/api/v1/sessions/s1/logs"
    assert first[3] == second[3] and first[2]["Idempotency-Key"] == second[2]["Idempotency-Key"]
    assert json.loads(first[3])["entries"][0]["at"] == "2023-11-14T22:13:20.250000Z"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_or_as_a_date_is_what_the_core_waits(stub, status):
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = stub((status, {"Retry-After": "7"}, {}), (status, {"Retry-After": later}, {}), (status, {}, b"<html>"))
    transport = HttpTransport(server.url, "t")
    with pytest.raises(RetryLater) as seconds:
        transport.send("s1", Op("report", {"progress": {"a": 1}}))
    assert seconds.value.retry_after == 7.0
    with pytest.raises(RetryLater) as date:
        transport.send("s1", Op("report", {"progress": {"a": 1}}))
    assert 25 <= date.value.retry_after <= 31
    with pytest.raises(RetryLater) as plain:
        transport.send("s1", Op("report", {"progress": {"a": 1}}))
    assert plain.value.retry_after is None and str(plain.value).startswith(str(status))


def test_a_repeat_still_in_flight_is_retried_after_half_a_second(stub):
    server = stub((409, {}, {"error": {"code": "idempotency_key_in_flight", "message": "wait"}}))
    with pytest.raises(RetryLater) as raised:
        HttpTransport(server.url, "t").send("s1", Op("finish", {"state": "completed"}))
    assert raised.value.retry_after == 0.5


def test_answers_retrying_cannot_change(stub):
    server = stub((404, {}, {"error": {"code": "not_found", "message": "no such session"}}),
                  (409, {}, {"error": {"code": "invalid_transition", "message": "already completed"}}),
                  (400, {}, {"error": {"code": "validation_error", "message": "progress: must be an object"}}),
                  (401, {}, b"not json"))
    transport = HttpTransport(server.url, "t")
    with pytest.raises(SessionGone, match="404 not_found: no such session"):
        transport.send("s1", Op("report", {"progress": {"a": 1}}))
    with pytest.raises(SessionGone, match="409 invalid_transition"):
        transport.send("s1", Op("finish", {"state": "completed"}))
    with pytest.raises(Rejected, match="400 validation_error: progress: must be an object"):
        transport.send("s1", Op("report", {"progress": 1}))
    with pytest.raises(Rejected, match="^401 Unauthorized$"):
        transport.send("s1", Op("report", {"progress": {"a": 1}}))


def test_no_server_and_a_server_that_never_answers_are_retried(stub):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(RetryLater, match="NewConnectionError|ConnectionRefused"):
        HttpTransport(f"http://127.0.0.1:{closed}", "t", timeout=1).send(None, Op("create", {"kind": "a.b"}))
    server = stub(None)
    with pytest.raises(RetryLater, match="ReadTimeoutError"):
        HttpTransport(server.url, "t", timeout=0.3).send(None, Op("create", {"kind": "a.b"}))
