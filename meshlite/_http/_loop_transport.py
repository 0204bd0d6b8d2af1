"""httpx's own async transport (httpcore), one per event loop that uses it.

An httpcore pool belongs to the loop that opened it (see :mod:`meshlite._http._per_loop`,
which holds one per loop, as it holds the aiohttp wire's sessions); this transport
serves the options only httpcore honours, and streamed uploads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from ._dead_loop import end_httpcore_pool
from ._per_loop import PerLoop
from ._retire import busy

__all__ = ["PerLoopTransport"]


class PerLoopTransport(httpx.AsyncBaseTransport):
    """One ``httpx.AsyncHTTPTransport`` per event loop, made by ``make`` on first use."""

    def __init__(self, make: Callable[[], httpx.AsyncHTTPTransport]) -> None:
        self._transports: PerLoop[httpx.AsyncHTTPTransport] = PerLoop(
            lambda loop: make(), lambda transport: transport.aclose(), end_httpcore_pool)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on the running loop's own transport."""
        loop = asyncio.get_running_loop()
        last = self._transports.last
        transport = last[1] if last[0] is loop else self._transports.get(loop)
        return await transport.handle_async_request(request)

    def busy(self) -> bool:
        """Whether a connection of any loop's transport is in use."""
        return any(busy(t) for _, t in self._transports.items())

    async def aclose(self) -> None:
        """Close every loop's transport (see :meth:`PerLoop.aclose`)."""
        await self._transports.aclose()
