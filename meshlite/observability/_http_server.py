"""The stdlib HTTP server behind :func:`~meshlite.observability.start_http_server`
(imported only when one is started)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["make_server"]

_log = logging.getLogger("meshlite.metrics")


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(host: str, port: int, body: Callable[[], bytes], content_type: str
                ) -> ThreadingHTTPServer:
    """A server (not yet serving) answering ``GET /metrics`` with ``body()``."""

    class Handler(BaseHTTPRequestHandler):
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
            _log.debug("metrics server: " + format, *args)

    server_class = _Server6 if ":" in host else _Server
    return server_class((host, port), Handler)
