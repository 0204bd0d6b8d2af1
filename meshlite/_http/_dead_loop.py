"""Ending connections whose event loop has closed (a thread's ``asyncio.run`` ended
while the mesh's shared pools still held its keep-alive connections).

asyncio closes a transport's socket in a callback of its loop, which will never run
again, so such a socket would stay open until the garbage collector found it (with a
``ResourceWarning``). Each transport is ended here instead, as its loop would have.

A loop ended as ``asyncio.run`` ends it has closed its connections itself
(:mod:`meshlite._http._per_loop`); this is for one closed by ``close()`` alone. Only
asyncio's own transports are ended here: uvloop's (no ``_sock``) may be touched only
from their loop's thread, and a closed uvloop loop has closed them in its ``close()``.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["end_httpcore_pool", "end_transport"]


def end_transport(transport: Any) -> None:
    """End ``transport`` (an asyncio transport of a closed loop): close its socket."""
    # Under asyncio's TLS, the socket is the TLS protocol's own transport's.
    raw = getattr(getattr(transport, "_ssl_protocol", None), "_transport", transport)
    if getattr(raw, "_sock", None) is not None:
        with contextlib.suppress(Exception):  # the protocol's loop is gone
            raw._call_connection_lost(None)  # closes the socket whatever it raises


def end_httpcore_pool(transport: Any) -> None:
    """End every connection of ``transport`` (an ``httpx.AsyncHTTPTransport`` whose
    loop has closed), through httpcore's and anyio's streams down to asyncio's."""
    for connection in list(getattr(getattr(transport, "_pool", None), "connections", ())):
        stream = getattr(getattr(connection, "_connection", None), "_network_stream", None)
        stream = getattr(stream, "_stream", None)  # httpcore's anyio stream: anyio's own
        stream = getattr(stream, "transport_stream", stream)  # under TLS, the socket's
        end_transport(getattr(stream, "_transport", None))
