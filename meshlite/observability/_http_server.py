"""The stdlib HTTP server behind :func:`~meshlite.observability.start_http_server`
(imported only when one is started)."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .._fork import fork_safe
from .._printable import printable

__all__ = ["HEADER_TIMEOUT", "MAX_CONNECTIONS", "make_server", "note_cannot_listen"]

_log = logging.getLogger("meshlite.metrics")

_LOGGED = 300  # characters of a request's log line (its request line is the client's)

MAX_CONNECTIONS = 64
"""Connections served at once, each on a thread of the application's process; one
beyond them is closed at once (Prometheus scrapes one at a time)."""

HEADER_TIMEOUT = 10.0
"""Seconds any read or write of a connection may wait: a client that sends half a
request and stays idle is hung up on instead of holding its thread for ever."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._serving: dict[Any, threading.Thread] = {}
        """The connections being served, and their threads: ended by
        :meth:`server_close` (an idle one would otherwise outlive the server by up
        to ``HEADER_TIMEOUT``)."""
        self._serving_lock = fork_safe(threading.Lock())
        super().__init__(address, handler)  # (closes the server if it cannot bind)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: close it, take no thread
            return
        # Recorded here, on the serving thread, so a server_close after shutdown()
        # finds every connection accepted.
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address), daemon=True,
                                  name="meshlite-metrics-connection")
        with self._serving_lock:
            self._serving[request] = thread
        try:
            thread.start()
        except BaseException:
            with self._serving_lock:
                self._serving.pop(request, None)
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._serving_lock:
                self._serving.pop(request, None)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection the client (or stop()) cut while it was answered; the stdlib
        # printed its traceback on stderr.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            _log.debug("metrics server: connection from %s ended: %r", client_address[0],
                       error)
        else:
            _log.exception("metrics server: serving a connection failed")

    def server_close(self) -> None:
        """Close the listening socket, then the connections being served (their
        reads and writes end at once) and wait for their threads."""
        super().server_close()
        with self._serving_lock:
            # (Live threads only: in a forked child the parent's connections are
            # listed, whose shutdown would cut them in the parent too.)
            serving = [(r, t) for r, t in self._serving.items() if t.is_alive()]
        for request, _ in serving:
            with contextlib.suppress(OSError):  # closed meanwhile
                request.shutdown(socket.SHUT_RDWR)
        for _, thread in serving:
            if thread is not threading.current_thread():
                thread.join(HEADER_TIMEOUT)


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(host: str, port: int, body: Callable[[], bytes], content_type: str
                ) -> ThreadingHTTPServer:
    """A server (not yet serving) answering ``GET /metrics`` with ``body()``."""

    class Handler(BaseHTTPRequestHandler):
        timeout = HEADER_TIMEOUT

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/metrics/"):
                self._answer(404, b"not found: Prometheus metrics are at /metrics\n",
                             "text/plain; charset=utf-8")
                return
            try:
                payload = body()
            except Exception:
                _log.exception("meshlite metrics: rendering failed")
                self._answer(500, b"rendering the metrics failed; see the server log\n",
                             "text/plain; charset=utf-8")
                return
            self._answer(200, payload, content_type)

        def do_HEAD(self) -> None:
            self.do_GET()

        def _answer(self, status: int, payload: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            # The stdlib's own log_message escapes control characters of the request
            # line; this replaces it, so it escapes them itself (a raw \r or \x1b in
            # a request's path would otherwise rewrite a terminal's log line).
            _log.debug("metrics server: %s", printable(format % args, _LOGGED))

    server_class = _Server6 if ":" in host else _Server
    try:
        return server_class((host, port), Handler)
    except OSError as error:  # the bare errno named neither the port nor the server
        note_cannot_listen(error, "meshlite metrics server", host, port)
        raise


def note_cannot_listen(error: OSError, owner: str, host: str, port: int) -> None:
    """Add to ``error``, raised binding ``host:port``, a note naming ``owner``, the
    address and the way out (shown under the error in a traceback)."""
    if isinstance(error, socket.gaierror):  # a well-formed name this machine cannot resolve
        error.add_note(f"{owner}: cannot listen on {host}:{port}: the host does not "
                       "resolve here; pass an IP address (127.0.0.1, 0.0.0.0) or a name "
                       "this machine resolves")
        return
    error.add_note(f"{owner}: cannot listen on {host}:{port}; pick another port "
                   "(port=0 picks a free one)")
