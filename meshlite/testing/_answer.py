"""What a :class:`FakeBackend` sends back for one request, as its behaviour says.

The loop server (``_server.py``) decides *when* to answer (latency, hang, the
connection still open); this module decides *what*: :func:`compose` turns a
request and a :class:`Behaviour` into status, headers and body, :func:`failure`
is the answer when a user's ``body`` or ``latency`` callable raised, and
:func:`abort_with_reset` answers with a TCP reset, as a crashed server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Any

from ._behaviour import Behaviour, encode_body
from ._http11 import ReceivedRequest

if TYPE_CHECKING:
    from ._server import SharedState

__all__ = ["Headers", "abort_with_reset", "compose", "failure"]

Headers = list[tuple[str, str]]


def compose(request: ReceivedRequest, b: Behaviour,
            state: SharedState) -> tuple[int, Headers, bytes]:
    """The status, headers and body ``b`` gives ``request`` (counts injected errors)."""
    extra: tuple[tuple[str, str], ...] = ()
    if request.path == "/healthz" and request.method in ("GET", "HEAD"):
        status = b.health_status
        payload: Any = {"status": "ok" if status < 400 else "unhealthy", "backend": state.url}
    elif b.error_rate and state.random.random() < b.error_rate:
        state.count("errors")
        status = b.error_status
        payload = {"error": "injected by FakeBackend", "status": status, "backend": state.url}
    else:
        status, extra = b.status, b.headers
        payload = b.body(request) if callable(b.body) else b.body
        if payload is None:
            payload = {"backend": state.url, "method": request.method, "path": request.path}
    headers: Headers = [("server", "meshlite-FakeBackend")]
    if not any(name == "content-type" for name, _ in extra):
        headers.append(("content-type", "application/json"))
    headers.extend(extra)
    if status >= 400 and b.retry_after is not None:
        headers.append(("retry-after", b.retry_after))
    return status, headers, encode_body(payload)


def failure(what: str, error: Exception) -> tuple[int, Headers, bytes]:
    """The 500 answer for a user's ``body`` or ``latency`` callable that raised."""
    return (500, [("content-type", "text/plain")],
            f"FakeBackend: {what} callable raised {error!r}".encode())


def abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a reset ("connection reset by peer"), not a FIN."""
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN, as when
    # a server process crashes.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
