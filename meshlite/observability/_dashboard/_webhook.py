"""Alert webhook: one JSON POST per service per evaluation, grouping the alerts of
that service that fired or resolved in it.

Uses the standard library (``urllib``) in a worker thread, so the dashboard extra
needs no HTTP client. urllib's timeout bounds each socket operation, not the POST
(a receiver sending its answer a byte at a time would hold the thread, and every
later notification queued behind it, forever), so at the deadline the POST's
connections are shut down from outside. Failures are logged, never raised: an
unreachable receiver must not stop the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import socket
import threading
import urllib.request
from typing import Any

from ..._fork import fork_safe
from ..._printable import origin_shown
from ._rules import Alert

__all__ = ["group_payload", "post_alerts"]

_log = logging.getLogger("meshlite.dashboard")


def group_payload(service: str, alerts: list[Alert]) -> bytes:
    """The JSON body POSTed for one service's ``alerts``: ``{"service": ...,
    "status": "firing" | "resolved", "alerts": [...], "alert": {...}}``; ``status``
    is ``firing`` when any of them fired, ``alert`` the first of them."""
    status = "firing" if any(a.state == "firing" for a in alerts) else "resolved"
    listed = [a.as_dict() for a in alerts]
    return json.dumps({"service": service, "status": status, "alerts": listed,
                       "alert": listed[0]}).encode()


class _Watch:
    """The connections one POST opens, so that its deadline can end them from
    another thread (shutting a socket down wakes a thread blocked reading it)."""

    def __init__(self) -> None:
        self._lock = fork_safe(threading.Lock())
        self._socks: list[socket.socket] = []
        self._expired = False

    def track(self, cls: type[http.client.HTTPConnection]) -> Any:
        """A factory of ``cls`` connections whose sockets this watch can end."""
        def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            conn = cls(host, **kwargs)
            connect = conn.connect

            def watched() -> None:
                connect()
                with self._lock:
                    self._socks.append(conn.sock)
                    if self._expired:
                        _end(conn.sock)
            conn.connect = watched  # type: ignore[method-assign]
            return conn
        return make

    def expire(self) -> None:
        """End every connection, now and any made from now on."""
        with self._lock:
            self._expired = True
            for sock in self._socks:
                _end(sock)


def _end(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Http(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watch) -> None:
        super().__init__()
        self.watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.watch.track(http.client.HTTPConnection), req)


class _Https(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watch) -> None:
        super().__init__()
        self.watch = watch

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.watch.track(http.client.HTTPSConnection), req,
                            context=self._context)  # type: ignore[attr-defined]


def _post(url: str, body: bytes, timeout: float, watch: _Watch) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "meshlite-dashboard"})
    opener = urllib.request.build_opener(_Http(watch), _Https(watch))
    with opener.open(request, timeout=timeout) as response:
        return int(response.status)


async def post_alerts(url: str, service: str, alerts: list[Alert], seconds: float) -> bool:
    """POST one notification of ``service``'s ``alerts`` to ``url`` within
    ``seconds``; returns whether the receiver answered 2xx.

    Never raises except on cancellation: network errors, timeouts and non-2xx
    answers are logged (without the URL's query, which may hold a secret).
    """
    where = origin_shown(url)  # (a Slack-style URL's path is its secret)
    watch = _Watch()
    try:
        async with asyncio.timeout(seconds):
            status = await asyncio.to_thread(_post, url, group_payload(service, alerts),
                                             seconds, watch)
    except TimeoutError:
        watch.expire()
        _log.warning("alert webhook %s failed for %s/%s: timed out after %s s", where,
                     service, ",".join(a.rule for a in alerts), seconds)
        return False
    except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
        _log.warning("alert webhook %s failed for %s/%s: %s", where, service,
                     ",".join(a.rule for a in alerts), error)
        return False
    if not 200 <= status < 300:  # pragma: no cover - urllib raises HTTPError for these
        _log.warning("alert webhook %s answered %d", where, status)
        return False
    return True
