"""The ASGI lifespan, passing through :class:`MeshMiddleware`: a mesh that the app's
lifespan opened and left open when it shut down is closed before the server hears
that the shutdown is complete.

A server may end its process as soon as it hears it (uvicorn ends a worker that shut
down on SIGTERM by raising SIGTERM again, before its event loop cancels any task):
the mesh's close is then the last moment its calls' spans and its metrics can still
be sent, and nothing else would run it.
"""

from __future__ import annotations

from typing import Any

from ._request import Message, Send

__all__ = ["watching"]

_ENDS = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


def watching(mesh: Any, send: Send) -> Send:
    """``send`` for a lifespan scope of an app whose calls go through ``mesh``."""
    closed_before = mesh.state != "open"
    opened_here = False

    async def sending(message: Message) -> None:
        nonlocal opened_here
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            opened_here = closed_before and mesh.state == "open"
        elif kind in _ENDS and opened_here and mesh.state == "open":
            await mesh.close_left_open("the app's lifespan that opened it shut down")
        await send(message)

    return sending
