"""httpx's own async transport (httpcore), one per event loop that uses it.

An httpcore pool's connections and locks belong to the event loop that opened them:
a request from another loop must not reuse them (from a loop started after the first
one closed, every request failed with ``RuntimeError: Event loop is closed``). The
aiohttp wire keeps one session per loop for the same reason
(:mod:`meshlite._http._aio_wire`); this is its twin for the options only httpcore
honours, and for streamed uploads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import httpx

from ._dead_loop import end_httpcore_pool
from ._retire import busy

__all__ = ["PerLoopTransport"]


class PerLoopTransport(httpx.AsyncBaseTransport):
    """One ``httpx.AsyncHTTPTransport`` per event loop, made by ``make`` on first use.

    The last loop's transport is kept apart (one attribute read per request in the
    usual case of a single loop); the connections of loops that have closed are
    ended when another loop comes, or when the mesh closes."""

    def __init__(self, make: Callable[[], httpx.AsyncHTTPTransport]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._current: tuple[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport] | None = None
        self._by_loop: dict[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport] = {}

    def _of(self, loop: asyncio.AbstractEventLoop) -> httpx.AsyncHTTPTransport:
        with self._lock:
            transport = self._by_loop.get(loop)
            if transport is None:
                for gone in [old for old in self._by_loop if old.is_closed()]:
                    end_httpcore_pool(self._by_loop.pop(gone))
                transport = self._by_loop[loop] = self._make()
            self._current = (loop, transport)
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on the running loop's own transport."""
        loop = asyncio.get_running_loop()
        current = self._current
        transport = (current[1] if current is not None and current[0] is loop
                     else self._of(loop))
        return await transport.handle_async_request(request)

    def busy(self) -> bool:
        """Whether a connection of any loop's transport is in use."""
        return any(busy(t) for t in list(self._by_loop.values()))

    async def aclose(self) -> None:
        """Close the running loop's transport; those of other loops still running are
        closed on their own loop."""
        with self._lock:
            transports, self._by_loop, self._current = self._by_loop, {}, None
        here = asyncio.get_running_loop()
        for loop, transport in transports.items():
            if loop is here:
                await transport.aclose()
            elif loop.is_closed():
                end_httpcore_pool(transport)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(transport.aclose(), loop)
