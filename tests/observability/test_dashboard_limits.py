"""The dashboard server's bounds, against a real uvicorn server on loopback: a
request head too large is answered 431 before it is read to the end, a head too
slow is cut off, connections beyond the cap are closed at once, and while the
dashboard is flooded with idle half-sent requests the mesh's own calls to a real
backend keep working (with a descriptor limit like a small container's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
from collections.abc import AsyncIterator

import pytest
from _ws import connect

import meshlite as ml
from meshlite.observability._dashboard._limits import Limits
from meshlite.observability._dashboard._server import DashboardServer
from meshlite.testing import FakeBackend

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
WAIT = 10.0  # a bound so a broken server fails the test instead of hanging it


def make_mesh(*backends: str) -> ml.Mesh:
    return ml.Mesh([ml.Service("api", list(backends) or ["http://127.0.0.1:9"])])


async def open_raw(srv: DashboardServer) -> Stream:
    return await asyncio.open_connection("127.0.0.1", srv.port)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), WAIT)


@contextlib.asynccontextmanager
async def dashboard(mesh: ml.Mesh, **options: float) -> AsyncIterator[DashboardServer]:
    srv = await mesh.serve_dashboard(port=0, **options)  # type: ignore[arg-type]
    try:
        yield srv
    finally:
        await srv.stop()


def test_limits_are_validated() -> None:
    for field, value in (("max_connections", 0), ("header_timeout", 0),
                         ("max_header_bytes", 100), ("keep_alive", 0)):
        with pytest.raises(ml.ConfigError, match=f"serve_dashboard: {field} must be"):
            Limits(**{field: value})  # type: ignore[arg-type]


async def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ml.ConfigError, match="unknown option 'max_conections'"):
        await make_mesh().serve_dashboard(port=0, max_conections=5)


@pytest.fixture(params=["httptools", "h11"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each HTTP parser uvicorn may pick (httptools when installed, else h11)."""
    from uvicorn.protocols.http import auto

    if request.param == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        monkeypatch.setattr(auto, "AutoHTTPProtocol", H11Protocol)
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        monkeypatch.setattr(auto, "AutoHTTPProtocol", HttpToolsProtocol)
    return str(request.param)


async def test_a_huge_header_is_refused_with_431_and_closed(parser: str) -> None:
    async with dashboard(make_mesh(), max_header_bytes=4096) as srv:
        reader, writer = await open_raw(srv)
        # twice the limit, and no end of the head: without the limit the server
        # would wait for the rest (of a header that could grow to any size)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8192)
        await writer.drain()
        answer = await closed_by_server(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 ")
        # a normal request with normal headers still works
        reader, writer = await open_raw(srv)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200 ")
        writer.close()


async def test_heads_arriving_in_pieces_are_counted_whole(parser: str) -> None:
    head = (b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"p" * 2500
            + b"\r\nConnection: close\r\n\r\n")
    async with dashboard(make_mesh(), max_header_bytes=3000) as srv:
        for cut in (len(head) - 1, len(head) - 2, len(head) - 3, 40):  # the end split too
            reader, writer = await open_raw(srv)
            writer.write(head[:cut])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(head[cut:])
            assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200 "), cut
            writer.close()
        reader, writer = await open_raw(srv)  # the same head with 600 more bytes
        for i in range(0, len(head) + 600, 500):
            writer.write((head[:-4] + b"q" * 600 + b"\r\n\r\n")[i:i + 500])
            await writer.drain()
            await asyncio.sleep(0.01)
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 431 ")
        writer.close()


async def test_a_huge_head_pipelined_behind_a_small_one_is_refused(parser: str) -> None:
    # The bytes after the end of the first head, and those arriving while it was
    # answered, were not counted: a head 25 times the limit was parsed and answered.
    small = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    huge = (b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000
            + b"\r\nConnection: close\r\n\r\n")
    async with dashboard(make_mesh(), max_header_bytes=4096) as srv:
        reader, writer = await open_raw(srv)
        writer.write(small + huge)  # one write: both heads in one read
        await writer.drain()
        answer = await closed_by_server(reader)
        writer.close()
        assert b"HTTP/1.1 431 " in answer
        assert answer.count(b"HTTP/1.1 200 ") <= 1  # the huge one is never answered
        reader, writer = await open_raw(srv)  # two small ones in one write still work
        writer.write(small + small[:-2] + b"Connection: close\r\n\r\n")
        assert (await closed_by_server(reader)).count(b"HTTP/1.1 200 ") == 2
        writer.close()


async def test_a_slow_or_missing_request_head_is_cut_off() -> None:
    async with dashboard(make_mesh(), header_timeout=0.2) as srv:
        idle_reader, idle = await open_raw(srv)  # sends nothing at all
        half_reader, half = await open_raw(srv)
        half.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
        await half.drain()
        assert await closed_by_server(idle_reader) == b""
        assert await closed_by_server(half_reader) == b""
        # between keep-alive requests too: one whole request, then half of another
        reader, writer = await open_raw(srv)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), WAIT)
        assert status.startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /api/health HTTP/1.1\r\n")
        rest = await closed_by_server(reader)
        assert rest.count(b"HTTP/1.1") == 0  # the half request was never answered
        for w in (idle, half, writer):
            w.close()


async def test_the_websocket_outlives_the_header_timeout() -> None:
    async with dashboard(make_mesh(), header_timeout=0.1) as srv:
        url = srv.url.replace("http://", "ws://") + "/ws"
        async with connect(url, proxy=None) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            tick = json.loads(await asyncio.wait_for(ws.recv(), WAIT))  # ~1 s later
            assert tick["type"] in ("tick", "delta")  # a delta after a hello with the mesh


async def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    async with dashboard(make_mesh(), max_connections=4, header_timeout=5) as srv:
        streams = [await open_raw(srv) for _ in range(12)]
        # those beyond the cap close at once; the 4 kept stay open for header_timeout
        ends = await asyncio.gather(*(asyncio.wait_for(r.read(), 2.0) for r, _ in streams),
                                    return_exceptions=True)
        closed = sum(1 for e in ends if e == b"" or isinstance(e, ConnectionError))
        assert closed == 8  # all but the 4 it keeps, closed before header_timeout
        for _, w in streams:
            w.close()


@pytest.mark.skipif(sys.platform != "linux", reason="counts descriptors in /proc/self/fd")
async def test_mesh_calls_keep_working_while_the_dashboard_is_flooded() -> None:
    attackers = 300
    async with FakeBackend() as backend:
        mesh = make_mesh(backend.url)
        async with mesh, dashboard(mesh, max_connections=16, header_timeout=30) as srv:
            client = mesh.http("api")
            assert (await client.get("/")).status_code == 200
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            in_use = len(os.listdir("/proc/self/fd"))
            # like a container's limit: room for the attack's own sockets and a
            # little more, not for the dashboard to hold as many again
            limit = in_use + attackers + 80
            if hard != resource.RLIM_INFINITY and limit > hard:
                pytest.skip(f"the descriptor hard limit ({hard}) is below {limit}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            held: list[asyncio.StreamWriter] = []
            try:
                for _ in range(attackers):  # idle half-sent requests, kept open
                    try:
                        _, w = await open_raw(srv)
                    except OSError:  # out of descriptors: the dashboard holds too many
                        break
                    w.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    held.append(w)
                    await asyncio.sleep(0)
                await asyncio.sleep(0.2)  # the server has accepted (and shed) them all
                codes: list[int | str] = []
                for _ in range(30):  # each on a new connection to the backend
                    try:
                        r = await client.get("/", headers={"Connection": "close"})
                        codes.append(r.status_code)
                    except Exception as error:  # shown in the assertion
                        codes.append(repr(error))
                assert codes == [200] * 30
                assert len(held) == attackers
            finally:
                for w in held:
                    w.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            await client.aclose()
