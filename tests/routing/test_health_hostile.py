"""HttpHealthCheck against backends whose health endpoint never finishes its body:
a probe is bounded in time (its ``timeout`` covers the whole exchange) and in memory,
so one such backend neither stalls the round that probes every other backend (nor
the mesh's start, which waits for the first round) nor fills the memory. Real
loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import meshlite as ml
from meshlite.routing import HttpHealthCheck
from meshlite.testing import FakeBackend


@contextlib.asynccontextmanager
async def endless_health(pause: float, size: int
                         ) -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering ``200`` with a chunked body that never ends: one chunk of
    ``size`` bytes every ``pause`` seconds (0: as fast as the client reads)."""
    sent = [0]
    chunk = b"y" * size
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while sent[0] < 1 << 30:
                writer.write(frame)
                await writer.drain()
                sent[0] += len(chunk)
                await asyncio.sleep(pause)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", sent
    finally:
        server.close()


async def test_a_trickling_health_body_neither_stalls_the_round_nor_the_start() -> None:
    check = HttpHealthCheck(interval=60.0, timeout=0.5, unhealthy_threshold=1)
    async with endless_health(0.05, 1) as (url, _), FakeBackend(health_status=503) as down:
        mesh = ml.Mesh([ml.Service("users", [url, down.url], health_check=check)])
        await asyncio.wait_for(mesh.__aenter__(), 10.0)
        try:
            backends = {h.address: h for h in mesh.health()["users"].backends}
        finally:
            await mesh.__aexit__(None, None, None)
    assert backends[down.url].status == "unhealthy"
    assert "503" in backends[down.url].reason
    assert backends[url].status == "unhealthy"
    assert "timed out" in backends[url].reason


async def test_a_fast_endless_health_body_is_not_read_into_memory() -> None:
    check = HttpHealthCheck(interval=60.0, timeout=5.0, unhealthy_threshold=1)
    async with endless_health(0.0, 65536) as (url, sent):
        mesh = ml.Mesh([ml.Service("users", [url], health_check=check)])
        async with mesh:
            (backend,) = mesh.health()["users"].backends
    assert backend.status == "up"  # 2xx: the body is not the probe's business
    assert sent[0] < 32 << 20
