"""Slow clients: what they do to a bare gunicorn, and what nginx in front of it changes.

A slow client connects and sends its request a little at a time: one more header line
every second, or a 1 MiB body one byte every half second.  gunicorn's gthread worker hands
a connection to a thread as soon as its first bytes arrive, and that thread then blocks
reading the rest, with no timeout; the project's 2 workers x 4 threads are 8 such threads.

* Bare gunicorn: once every worker holds ``GUNICORN_THREADS`` slow connections, ``/healthz``
  is not answered at all (asserted: it times out), without any credentials.  Which worker
  accepts a connection is the kernel's choice, and it does not always spread 12 evenly, so
  the test reads who holds what from /proc and opens a few more while a worker has fewer
  than its thread count (that is what happens; an attacker would just open more).
* nginx with docs/nginx/runboard.conf in front: with 12 slow clients held open,
  ``/healthz`` keeps answering at once, gunicorn never sees the unfinished requests
  (its access log has no POST until a complete one is sent), and ``client_header_timeout``
  closes the header trickles while the body trickles, which have no minimum rate, stay open.

nginx is Debian's (``apt-get install nginx``), run from a temporary prefix on free ports
(whatever ``nginx.service`` does on port 80 is not touched); without it these tests skip
locally and fail under ``CI=true``.
"""
from __future__ import annotations

import http.client
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gunicorn_support import ROOT, TOKEN, Server, children, free_port, reap, wait_for

NGINX = "/usr/sbin/nginx"
SITE_CONF = ROOT / "docs" / "nginx" / "runboard.conf"
WORKERS, THREADS = 2, 4
SLOW_CLIENTS = 12
#: ``/healthz`` must answer within this, or (bare gunicorn) is shown not to.
PROBE_TIMEOUT = 2.0
#: Bare gunicorn: at most this many slow connections beyond SLOW_CLIENTS to fill every worker.
MAX_EXTRA = 36
HEADER_PACE, BODY_PACE = 1.0, 0.5
BODY_LENGTH = 1024 * 1024


def _require_nginx() -> None:
    if Path(NGINX).exists():
        return
    problem = f"{NGINX} is missing (apt-get install -y nginx)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"slow-client tests need nginx under CI=true: {problem}")
    pytest.skip(f"nginx tests skipped: {problem}")


def healthz(port: int, timeout: float = PROBE_TIMEOUT) -> tuple[int | None, float]:
    """``GET /healthz`` on a fresh connection: (status, or None when not answered in time; seconds)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        with connection.getresponse() as response:
            response.read()
            return response.status, time.monotonic() - started
    except TimeoutError:
        return None, time.monotonic() - started
    finally:
        connection.close()


def complete_post(port: int, padding: int) -> int:
    """An admin's ``POST /api/v1/sessions`` of an external session, its JSON padded with
    ``padding`` spaces, sent at once; the status."""
    body = b'{"kind": "external.job", "label": "complete"}' + b" " * padding
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/api/v1/sessions", body=body,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        with connection.getresponse() as response:
            response.read()
            return response.status
    finally:
        connection.close()


class SlowClient(threading.Thread):
    """One connection that never finishes its request.

    ``header``: ``GET /healthz`` and one more header line every HEADER_PACE seconds, never
    the blank line.  ``body``: the complete headers of a ``POST /api/v1/sessions`` with a
    1 MiB Content-Length, then one body byte every BODY_PACE seconds.  The pacing is a
    ``select`` on the socket and on the group's stop socket, so the thread also notices at
    once when the server answers or closes (``ended``) or the test is over.
    """

    def __init__(self, port: int, kind: str, stop: socket.socket):
        super().__init__(name=f"slow-{kind}", daemon=True)
        self.port, self.kind, self._stop_socket = port, kind, stop
        self.opened = threading.Event()     # connected, first bytes sent
        self.ended = threading.Event()      # the server answered, closed or reset it
        self.sent = 0                       # pieces sent after the first bytes
        self.outcome = ""

    def _first_bytes(self) -> bytes:
        if self.kind == "header":
            return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        return (b"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n{" % BODY_LENGTH)

    def _next_piece(self) -> bytes:
        return b"X-Slow-%d: x\r\n" % self.sent if self.kind == "header" else b" "

    def run(self) -> None:
        pace = HEADER_PACE if self.kind == "header" else BODY_PACE
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(self._first_bytes())
                self.opened.set()
                while True:
                    readable, _, _ = select.select([sock, self._stop_socket], [], [], pace)
                    if self._stop_socket in readable:
                        return
                    if sock in readable:
                        answer = sock.recv(200)
                        self.outcome = f"answered {answer[:60]!r}" if answer else "closed by the server"
                        self.ended.set()
                        return
                    sock.sendall(self._next_piece())
                    self.sent += 1
        except OSError as exc:              # refused, reset, broken pipe
            self.outcome = f"{type(exc).__name__}: {exc}"
            self.ended.set()


class SlowClients:
    """A group of SlowClient threads; leaving the ``with`` block stops and joins them all
    (their sockets are closed by the threads themselves)."""

    def __init__(self, port: int):
        self.port = port
        self.clients: list[SlowClient] = []
        self._stop_reader, self._stop_writer = socket.socketpair()

    def open(self, kind: str, count: int = 1) -> list[SlowClient]:
        new = [SlowClient(self.port, kind, self._stop_reader) for _ in range(count)]
        self.clients.extend(new)
        for client in new:
            client.start()
        wait_for(lambda: all(c.opened.is_set() or c.ended.is_set() for c in new), 10,
                 f"{count} slow {kind} connection(s) opened")
        failed = [c.outcome for c in new if not c.opened.is_set()]
        assert not failed, f"slow clients could not connect: {failed}"
        return new

    def ended(self, kind: str | None = None) -> list[str]:
        return [f"{c.kind}: {c.outcome}" for c in self.clients if c.ended.is_set() and kind in (None, c.kind)]

    def __enter__(self) -> "SlowClients":
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._stop_writer.send(b"x")    # stays readable: wakes every thread's select
            for client in self.clients:
                client.join(timeout=10)
            stuck = [c.name for c in self.clients if c.is_alive()]
            if exc_info[0] is None:             # never hide the test's own failure
                assert not stuck, f"slow client threads did not stop: {stuck}"
        finally:
            self._stop_reader.close()
            self._stop_writer.close()


def held_per_worker(server: Server) -> dict[int, int]:
    """How many established connections to ``server``'s port each of its workers holds
    (socket inodes of /proc/net/tcp matched against each worker's open files)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == server.port and fields[3] == "01":
            inodes.add(f"socket:[{fields[9]}]")
    held = {}
    for pid in server.worker_pids():
        count = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                count += os.readlink(fd) in inodes
            except OSError:
                pass                        # closed while we looked
        held[pid] = count
    return held


@pytest.fixture
def gunicorn(tmp_path):
    """The production command (project config, gthread, 2 workers x 4 threads) on SQLite."""
    server = Server(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, "slow", workers=WORKERS, threads=THREADS)
    server.migrate()
    with server.serving():
        yield server


def site_config(gunicorn_port: int, listen_port: int) -> str:
    """docs/nginx/runboard.conf with the listen port and upstream swapped; every swap must
    match exactly once, so a changed document fails here instead of testing something else."""
    text = SITE_CONF.read_text()
    for pattern, replacement in [(r"(?m)^\s*listen 80;$", f"    listen 127.0.0.1:{listen_port};"),
                                 (r"(?m)^\s*listen \[::\]:80;$", ""),   # IPv6 may be off in containers
                                 (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{gunicorn_port};")]:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"{SITE_CONF}: expected one match of {pattern!r}, found {count}"
    return text


def nginx_config(prefix: Path, site: Path) -> str:
    """A main config that runs nginx from ``prefix`` and includes the site like Debian's
    nginx.conf does (inside ``http``).  As root, workers would drop to ``nobody``, which
    cannot enter pytest's 0700 temporary directory to buffer bodies: ``user root`` then."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} notice;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n    include {site};\n}}\n")


class Nginx:
    def __init__(self, prefix: Path, conf: Path, port: int):
        self.prefix, self.conf, self.port = prefix, conf, port
        self.command = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        self.process: subprocess.Popen | None = None
        self.workers: set[int] = set()

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in (self.prefix / "stderr.log", self.prefix / "error.log") if p.exists())

    def test_config(self) -> None:
        done = subprocess.run([*self.command, "-t"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"nginx -t refused the generated config:\n{done.stderr}"

    def start(self) -> None:
        with (self.prefix / "stderr.log").open("w") as log:
            self.process = subprocess.Popen([*self.command, "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready():
            assert self.process.poll() is None, f"nginx exited with {self.process.returncode}:\n{self.log_text()}"
            try:
                return healthz(self.port)[0] == 200
            except OSError:
                return False                # not listening yet
        wait_for(ready, timeout, f"nginx on port {self.port} answering /healthz", interval=0.05)
        self.workers = children(self.process.pid)

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown); should it hang, SIGKILL the master and its workers."""
        if self.process is None:
            return
        workers = self.workers | children(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        reap(self.process, lambda: workers, timeout=15, what="nginx workers")


@pytest.fixture
def nginx_binary():
    _require_nginx()
    return NGINX


@pytest.fixture
def nginx(nginx_binary, gunicorn, tmp_path):
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    site = prefix / "runboard.conf"
    site.write_text(site_config(gunicorn.port, listen := free_port()))
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, site))
    server = Nginx(prefix, conf, listen)
    server.test_config()
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_slow_header_clients_starve_bare_gunicorn(gunicorn):
    """No credentials needed: slow request headers take every gthread thread, and
    ``/healthz`` on gunicorn itself times out until they go away."""
    with SlowClients(gunicorn.port) as slow:
        slow.open("header", SLOW_CLIENTS)
        held = wait_for(lambda: (h := held_per_worker(gunicorn)) and sum(h.values()) == SLOW_CLIENTS and h,
                        10, f"gunicorn holding {SLOW_CLIENTS} slow connections")
        spread = dict(held)
        while min(held.values()) < THREADS:           # the kernel gave one worker too few
            assert len(slow.clients) < SLOW_CLIENTS + MAX_EXTRA, f"workers still not all full: {held}"
            slow.open("header")
            held = wait_for(lambda: (h := held_per_worker(gunicorn)) and sum(h.values()) == len(slow.clients) and h,
                            10, f"gunicorn holding {len(slow.clients)} slow connections")
        print(f"{SLOW_CLIENTS} slow connections per worker: {sorted(spread.values())}; "
              f"{len(slow.clients) - SLOW_CLIENTS} more to fill every worker: {sorted(held.values())}")
        for _ in range(3):
            status, seconds = healthz(gunicorn.port)
            assert status is None, (f"/healthz answered {status} in {seconds:.2f}s although every worker "
                                    f"holds >= {THREADS} slow connections ({held})")
            assert seconds >= PROBE_TIMEOUT
        assert not slow.ended(), f"gunicorn ended slow connections: {slow.ended()}"
    # Starved, not broken: with the slow clients gone the same server answers again.
    wait_for(lambda: healthz(gunicorn.port)[0] == 200, 10, "/healthz answering after the slow clients left")


def test_nginx_in_front_keeps_healthz_answering_under_slow_clients(gunicorn, nginx):
    """The same 12 slow clients (half trickling headers, half trickling 1 MiB bodies) held
    open against nginx: ``/healthz`` answers each time within PROBE_TIMEOUT, gunicorn sees
    none of the unfinished requests but does get a complete one, and nginx ends the header
    trickles at its ``client_header_timeout`` while the body trickles go on."""
    header_timeout = int(re.search(r"client_header_timeout (\d+)s;", SITE_CONF.read_text()).group(1))
    with SlowClients(nginx.port) as slow:
        opened = time.monotonic()
        headers = slow.open("header", SLOW_CLIENTS // 2)
        bodies = slow.open("body", SLOW_CLIENTS - SLOW_CLIENTS // 2)
        # Under way: each has sent more since its first bytes (a body byte, a header line).
        wait_for(lambda: all(c.sent >= 1 for c in slow.clients), 10, "slow clients trickling")
        for attempt in range(10):
            status, seconds = healthz(nginx.port)
            assert status == 200 and seconds < PROBE_TIMEOUT, (
                f"/healthz through nginx, attempt {attempt + 1}: {status} after {seconds:.2f}s")
        assert not slow.ended(), f"slow clients ended while /healthz was probed: {slow.ended()}"
        assert time.monotonic() - opened < header_timeout, "too slow to probe before the header timeout"

        # gunicorn served the probes and saw none of the unfinished requests.
        wait_for(lambda: sum(e["path"] == "/healthz" for e in gunicorn.access_entries()) >= 11, 10,
                 "gunicorn access log lines for the probes")
        posts = [e for e in gunicorn.access_entries() if e["method"] == "POST"]
        assert not posts, f"nginx passed unfinished bodies to gunicorn: {posts}"
        # A complete body is passed on once nginx has it all (256 KiB: buffered to a file).
        assert complete_post(nginx.port, 256 * 1024) == 201, nginx.log_text()[-2000:]
        wait_for(lambda: [e["status"] for e in gunicorn.access_entries() if e["method"] == "POST"] == ["201"], 10,
                 "gunicorn access log line for the complete POST")

        # client_header_timeout ends the header trickles; a trickling body has no deadline.
        wait_for(lambda: all(c.ended.is_set() for c in headers), header_timeout + 5,
                 f"nginx closing slow headers after client_header_timeout {header_timeout}s")
        assert not slow.ended("body"), slow.ended("body")
        assert all(c.sent >= 2 for c in bodies)


def _post(port: int, path: str, body: bytes, headers: dict) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        with connection.getresponse() as response:
            response.read()
            return response.status
    finally:
        connection.close()


def test_requests_refused_before_their_body_is_read_keep_their_status_through_nginx(gunicorn, nginx):
    """gunicorn issue #872: an answer sent with the body unread was reset, and nginx made a
    502 of it.  The app now reads the rest of any body up to 16 MiB before answering."""
    bad_token = {"Authorization": "Bearer not-a-token"}
    good_token = {"Authorization": f"Bearer {TOKEN}"}
    cases = [("/api/v1/sessions", 64 * 1024, bad_token, 401), ("/api/v1/sessions", 900 * 1024, bad_token, 401),
             ("/api/v1/sessions", 2 * 1024 * 1024, bad_token, 401),
             ("/api/v1/sessions", 2 * 1024 * 1024, good_token, 413)]
    for path, size, headers, expected in cases:
        statuses = [_post(nginx.port, path, b" " * size, headers) for _ in range(30)]
        assert statuses == [expected] * len(statuses), (path, size, statuses)
