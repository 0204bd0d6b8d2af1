"""Health checking many backends: what a round costs in connections and tasks.

Real loopback server; each backend is a distinct address (a path prefix) on it, as
a large deployment's backends are distinct hosts behind one check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import meshlite as ml
from meshlite.routing import HealthChecker, HttpHealthCheck


class Counting:
    """A keep-alive HTTP server answering 200 to everything, counting the
    connections it accepted and the requests it answered. It holds every answer
    until ``together`` requests are waiting, so a round's probes are all in flight
    at once, as they are against backends some way off."""

    def __init__(self, together: int) -> None:
        self.connections = 0
        self.requests = 0
        self.together = together
        self.arrived = asyncio.Event()

    async def answer(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                arrived = self.arrived
                if self.requests % self.together == 0:
                    self.arrived = asyncio.Event()
                    arrived.set()
                await arrived.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def counting_server(together: int) -> AsyncIterator[tuple[str, Counting]]:
    counting = Counting(together)
    server = await asyncio.start_server(counting.answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", counting
    finally:
        server.close()


async def test_each_backend_keeps_its_probe_connection_between_rounds() -> None:
    # httpx's client kept 20 idle connections: with 45 backends, every round after
    # the first opened 25 connections again (a 300-service mesh of 50 backends
    # each: 9,000 connects a round, and as many sockets left in TIME_WAIT).
    async with counting_server(45) as (url, server):
        service = ml.Service("s", [f"{url}/b{i}" for i in range(45)],
                             health_check=HttpHealthCheck(interval=5.0))
        (checker,) = service.components
        assert isinstance(checker, HealthChecker)
        await checker.open()
        try:
            for _ in range(3):
                await checker.run_once()
        finally:
            await checker.stop()
        assert server.requests == 3 * 45
        assert server.connections == 45
        assert all(e.healthy for e in service.endpoints)
