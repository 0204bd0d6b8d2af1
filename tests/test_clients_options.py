"""The mesh's clients with the options teams pass to the bare libraries: each behaves
as the bare library does, but for the differences docs/mesh.md lists. Closing the
mesh while a request of each client is in flight gives its caller the error the
docs name: never an error from inside aiohttp, nor a server's disconnection that no
server made."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from _raw_http import RawServer
from aiohttp.abc import AbstractResolver, ResolveResult

import meshlite as ml
from meshlite.routing import MeshClosedError
from meshlite.testing import FakeBackend

# -- a request's own middlewares= ------------------------------------------------------


class _NoNames(AbstractResolver):
    """Resolves no host name, and records each asked: the tests send to loopback IPs
    only, which aiohttp connects to without asking."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        raise OSError(f"no name is resolved here: {host}")

    async def close(self) -> None:
        pass


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend() as fake:
        yield fake


async def test_a_request_given_its_own_middlewares_is_still_routed(
        backend: FakeBackend) -> None:
    # aiohttp: a request's middlewares= replace the session's. They replaced the mesh's
    # routing too, and the request went to the service's name as a host name.
    seen: list[str] = []

    async def mine(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        seen.append(f"mine {request.url}")
        return await handler(request)

    async def the_sessions(request: aiohttp.ClientRequest, handler: Any
                           ) -> aiohttp.ClientResponse:
        seen.append("the session's")
        return await handler(request)

    names = _NoNames()
    async with (ml.Mesh([ml.Service("users", [backend.url])]) as mesh,
                mesh.aiohttp("users", middlewares=(the_sessions,),
                             connector=aiohttp.TCPConnector(resolver=names)) as session):
        async with session.get("/users/1", middlewares=(mine,)) as response:
            assert response.status == 200
            assert (await response.json())["backend"] == backend.url
        async with session.get("/users/2", middlewares=()) as response:
            assert response.status == 200
        async with session.get("/users/3") as response:
            assert response.status == 200
    # as aiohttp does: the request's middlewares in place of the session's
    assert seen == ["mine http://users/users/1", "the session's"]
    assert names.asked == []
    assert [r.path for r in backend.requests] == ["/users/1", "/users/2", "/users/3"]


# -- a failed answer's body, read through response.content ------------------------------


async def test_the_last_failed_answers_content_reads_as_a_plain_sessions() -> None:
    body = {"error": "down", "pad": "x" * 5000}
    async with FakeBackend(status=503, body=body) as failing:
        async with aiohttp.ClientSession() as plain, plain.get(f"{failing.url}/a") as response:
            expected = b"".join([c async for c in response.content.iter_chunked(1000)])
        assert len(expected) > 5000
        service = ml.Service("users", [failing.url], pipeline=ml.Pipeline(ml.Retry(attempts=2)),
                             outlier_detection=None)
        async with ml.Mesh([service]) as mesh, mesh.aiohttp("users") as session:
            async with session.get("/a") as response:  # answered 503 twice: the last returned
                assert response.status == 503
                chunks = [c async for c in response.content.iter_chunked(1000)]
                assert b"".join(chunks) == expected
                assert response.content.at_eof()
            async with session.get("/a") as response:
                assert await response.content.read() == expected
            async with session.get("/a") as response:
                assert await response.read() == expected
                assert await response.json() == body
        assert failing.request_count == 7  # 1 plain, then 2 attempts for each of 3 calls


# -- closing the mesh while requests are in flight -------------------------------------


class _HeldRetry:
    """A clock whose sleeps (a Retry's backoff) wait until the test lets them go."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        raise AssertionError("async calls only")

    async def asleep(self, seconds: float) -> None:
        self.waiting.set()
        await self.go.wait()


def _held_mesh(address: str, held: _HeldRetry) -> ml.Mesh:
    retry = ml.Retry(attempts=3, clock=held)
    return ml.Mesh([ml.Service("users", [address], pipeline=ml.Pipeline(retry),
                               outlier_detection=None)], drain_timeout=0.0)


async def _get(session: aiohttp.ClientSession, path: str) -> int:
    async with session.get(path) as response:
        return response.status


async def test_an_aiohttp_retry_due_after_the_mesh_closed_raises_mesh_closed() -> None:
    # The retry ran aiohttp's handler on the closed session: an AssertionError.
    async with FakeBackend(error_rate=1.0) as failing:
        held = _HeldRetry()
        mesh = _held_mesh(failing.url, held)
        await mesh.start()
        session = mesh.aiohttp("users")
        call = asyncio.create_task(_get(session, "/a"))
        await held.waiting.wait()  # the first attempt answered 503: the retry waits
        await mesh.aclose()
        assert session.closed
        held.go.set()
        with pytest.raises(MeshClosedError, match=r"session was closed .*not sent again"):
            await call
        assert failing.request_count == 1


async def test_an_aiohttp_retry_due_after_its_user_closed_the_session() -> None:
    async with FakeBackend(error_rate=1.0) as failing:
        held = _HeldRetry()
        async with _held_mesh(failing.url, held) as mesh:
            session = mesh.aiohttp("users")
            call = asyncio.create_task(_get(session, "/a"))
            await held.waiting.wait()
            await session.close()
            held.go.set()
            # aiohttp's own error for a request on a closed session
            with pytest.raises(RuntimeError, match=r"^Session is closed"):
                await call
        assert failing.request_count == 1


@pytest.fixture
def holding() -> Iterator[tuple[RawServer, threading.Event]]:
    """A server that reads each request and answers nothing until the test ends;
    the event is set once a request has arrived."""
    arrived, release = threading.Event(), threading.Event()

    def hold(head: bytes, body: bytes) -> bytes:
        arrived.set()
        release.wait(30)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    server = RawServer(hold)
    try:
        yield server, arrived
    finally:
        release.set()
        server.close()


def _unretried(address: str) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [address], pipeline=ml.Pipeline(),
                               outlier_detection=None)], drain_timeout=0.0)


async def test_an_aiohttp_request_the_close_cuts_says_the_mesh_closed(
        holding: tuple[RawServer, threading.Event]) -> None:
    # It said "Server disconnected" (ServerDisconnectedError), which no server did.
    server, arrived = holding
    mesh = _unretried(server.url)
    await mesh.start()
    session = mesh.aiohttp("users")
    call = asyncio.create_task(_get(session, "/a"))
    await asyncio.to_thread(arrived.wait, 30)
    await mesh.aclose()
    with pytest.raises(aiohttp.ClientConnectionError) as raised:
        await call
    assert not isinstance(raised.value, aiohttp.ServerDisconnectedError)
    assert str(raised.value) == (
        f"service 'users', backend {server.url}: connection closed: the mesh was closed "
        "while the request was in flight")
    assert session.closed


async def test_an_http_request_the_close_cuts_says_the_pool_closed(
        holding: tuple[RawServer, threading.Event]) -> None:
    # It was httpx.RemoteProtocolError "Server disconnected"; the sync wire says this.
    server, arrived = holding
    mesh = _unretried(server.url)
    await mesh.start()
    client = mesh.http("users")
    call = asyncio.create_task(client.get("/a"))
    await asyncio.to_thread(arrived.wait, 30)
    await mesh.aclose()
    with pytest.raises(httpx.ReadError, match=(
            r"^service 'users', backend http://127\.0\.0\.1:\d+: the connection was closed "
            r"with its pool \(the mesh closed, or the service was removed\) while the "
            r"request was on it")):
        await call
    await client.aclose()


# -- what docs/mesh.md says of trace_configs and raise_for_status -----------------------


async def test_trace_callbacks_of_the_request_run_once_those_of_sending_each_attempt() -> None:
    seen: list[tuple[str, str]] = []
    trace = aiohttp.TraceConfig()

    def record(kind: str) -> Any:
        async def callback(session: Any, context: Any, params: Any) -> None:
            seen.append((kind, str(params.url)))
        return callback

    trace.on_request_start.append(record("start"))
    trace.on_request_headers_sent.append(record("headers sent"))
    trace.on_request_end.append(record("end"))
    statuses: list[int] = []

    async def check(response: aiohttp.ClientResponse) -> None:
        statuses.append(response.status)

    async with FakeBackend(error_rate=1.0) as failing:
        service = ml.Service("users", [failing.url], pipeline=ml.Pipeline(ml.Retry(attempts=2)),
                             outlier_detection=None)
        async with (ml.Mesh([service]) as mesh,
                    mesh.aiohttp("users", trace_configs=[trace],
                                 raise_for_status=check) as session,
                    session.get("/a") as response):
            assert response.status == 503  # answered 503 twice: the last returned
    assert seen == [("start", "http://users/a"), ("headers sent", f"{failing.url}/a"),
                    ("headers sent", f"{failing.url}/a"), ("end", "http://users/a")]
    assert statuses == [503]  # the call's last answer, once
