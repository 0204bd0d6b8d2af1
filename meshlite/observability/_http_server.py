"""The stdlib HTTP server behind :func:`~meshlite.observability.start_http_server`
(imported only when one is started)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: close it, take no thread
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


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
