"""A small TCP proxy of the test suite's own, between the client and a real server, that
breaks the network on purpose.

Each accepted connection gets a fate from ``fates`` (a callable, so a test can script or
randomise them):

* ``"pass"`` — bytes flow both ways;
* ``"drop"`` — the connection is closed at once, before the server hears of it;
* ``"discard"`` — the request reaches the server, which does the work; its answer is
  thrown away and the connection closed: the client cannot know the work was done.

``refuse()`` closes the listening socket (new connections are refused) until ``accept()``.
"""
from __future__ import annotations

import socket
import threading
from typing import Callable

from gunicorn_support import free_port


class FaultProxy:
    def __init__(self, target_port: int, fates: Callable[[], str] = lambda: "pass"):
        self.target_port, self.fates = target_port, fates
        self.port = free_port()
        self.counts = {"pass": 0, "drop": 0, "discard": 0}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self.accept()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accept(self) -> None:
        """Listen (again) on the proxy's port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        """Stop listening and cut every open connection: connects are refused now."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)                    # shutdown wakes the accept() blocked on it
        self.cut()

    def cut(self) -> None:
        with self._lock:
            open_sockets, self._sockets = self._sockets, set()
        for sock in open_sockets:
            _close(sock)

    def close(self) -> None:
        self._closed = True
        self.refuse()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return                          # refused or closed
            fate = self.fates()
            with self._lock:
                self.counts[fate] += 1
            if fate == "drop":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, fate == "discard"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, discard: bool) -> None:
        """Copy ``source`` to ``sink``; a discarding pump closes both at the answer's first bytes."""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if discard:
                    break                       # the server answered: the work is done
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
