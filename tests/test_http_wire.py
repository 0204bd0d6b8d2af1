"""The aiohttp wire under mesh.http(), and mesh.aiohttp(): real loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from _system import free_port
from opentelemetry.sdk.trace import TracerProvider
from test_http import Server

import meshlite as ml
from meshlite.routing import MeshClosedError
from meshlite.testing import FakeBackend, FakeClock


@pytest.fixture
def servers() -> Any:
    made = [Server(), Server()]
    yield made
    for s in made:
        s.stop()


@pytest.fixture
async def backends() -> AsyncIterator[list[FakeBackend]]:
    async with FakeBackend() as a, FakeBackend() as b:
        yield [a, b]


def _mesh(urls: list[str], **options: Any) -> ml.Mesh:
    options.setdefault("balancer", "round_robin")
    return ml.Mesh([ml.Service("users", urls, **options)])


def _transport_connector(mesh: ml.Mesh) -> Any:
    pools = mesh.http_pools(mesh.service("users"), True)
    (target,) = pools._targets.values()
    return target.transport._sessions.last[1].connector


# -- mesh.http() on the aiohttp wire ---------------------------------------------------------

async def test_http_keeps_connections_alive(servers: list[Server]) -> None:
    a = servers[0]
    async with _mesh([a.url]) as mesh, mesh.http("users") as client:
        for i in range(5):
            assert (await client.get(f"/u/{i}")).status_code == 200
        pools = mesh.http_pools(mesh.service("users"), True)
        assert type(pools._targets[a.url].transport).__name__ == "AiohttpTransport"
    assert len(a.requests) == 5
    assert len(a.peers) == 1  # one connection, reused


async def test_http_pool_limits_cap_connections(servers: list[Server]) -> None:
    a = servers[0]
    a.delay = 0.05
    limits = httpx.Limits(max_connections=2)
    async with _mesh([a.url], http_pool={"limits": limits}) as mesh, \
            mesh.http("users") as client:
        answers = await asyncio.gather(*(client.get(f"/u/{i}") for i in range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert len(a.peers) == 2


async def test_http_full_pool_ends_in_connect_timeout_on_the_async_wire() -> None:
    # aiohttp bounds waiting for a free connection and connecting together (pool +
    # connect), and fails with its connection timeout: httpx's ConnectTimeout.
    async with FakeBackend(hang=True) as backend:
        service = ml.Service("users", [backend.url], pipeline=ml.Pipeline(),
                             http_pool={"limits": httpx.Limits(max_connections=1)})
        async with ml.Mesh([service]) as mesh, mesh.http("users") as client:
            held = asyncio.create_task(client.get("/", timeout=30.0))
            for _ in range(1000):  # until the one connection is taken (at most 10 s)
                if backend.requests:
                    break
                await asyncio.sleep(0.01)
            assert backend.requests
            with pytest.raises(httpx.ConnectTimeout):
                await client.get("/", timeout=httpx.Timeout(0.5, pool=0.1))
            held.cancel()


async def test_http_reset_hang_and_retry_on_the_other_backend(
        backends: list[FakeBackend]) -> None:
    a, b = backends
    a.set(reset=True)
    async with _mesh([a.url, b.url]) as mesh, mesh.http("users", timeout=0.5) as client:
        answers = [(await client.get("/x")).json()["backend"] for _ in range(4)]
        assert answers == [b.url] * 4  # each reset attempt was retried on b
        a.set(reset=False, hang=True)
        b.set(reset=True)
        with pytest.raises(httpx.TransportError):
            await client.get("/y")
    assert a.stats.resets >= 2
    assert b.stats.resets >= 1


async def _held(backends: list[FakeBackend], count: int) -> None:
    # Polls the servers' counters (kept on their own side): no event to wait on.
    while sum(b.stats.hangs for b in backends) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def _hold(backends: list[FakeBackend], hang: bool) -> None:
    for backend in backends:
        backend.set(hang=hang)


async def test_http_hedge_never_sends_a_post_twice(backends: list[FakeBackend]) -> None:
    # A hedge is a resend: a POST without an Idempotency-Key whose bytes have left
    # must not be hedged, as it must not be retried.
    _hold(backends, True)
    events: list[Any] = []
    pipeline = ml.Pipeline(ml.Hedge(0.0))  # a hedge as soon as the primary waits
    async with _mesh([b.url for b in backends], pipeline=pipeline) as mesh, \
            mesh.http("users") as client:
        mesh.add_hook(lambda event: events.append(event)
                      if isinstance(event, ml.HedgeStarted) else None)
        get = asyncio.create_task(client.get("/x"))
        await _held(backends, 2)  # the GET and its hedge, on the other backend
        _hold(backends, False)
        assert (await get).status_code == 200
        assert len(events) == 1
        _hold(backends, True)
        post = asyncio.create_task(client.post("/orders", content=b"{}"))
        await _held(backends, 3)  # the POST's attempt is held
        assert len(events) == 1  # and no hedge started for it
        _hold(backends, False)
        assert (await post).status_code == 200
    assert sum(b.stats.requests for b in backends) == 3


class _Gate(ml.Policy):
    """Holds every attempt until opened (a queue below the hedge, as a bulkhead or
    a rate limit in wait mode is), and records how each attempt ended."""

    kind = "gate"

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.entered = 0
        self.ended: list[str] = []

    def wrap(self, call_next: Any) -> Any:
        raise NotImplementedError

    def awrap(self, call_next: Any) -> Any:
        async def handle(ctx: Any) -> Any:
            self.entered += 1
            await self.open.wait()
            try:
                result = await call_next(ctx)
            except BaseException as error:
                self.ended.append(type(error).__name__)
                raise
            self.ended.append("answer")
            return result
        return handle


async def test_http_hedge_started_before_a_post_left_does_not_send_it_again(
        backends: list[FakeBackend]) -> None:
    _hold(backends, True)
    gate = _Gate()
    pipeline = ml.Pipeline(ml.Hedge(0.0), gate)
    async with _mesh([b.url for b in backends], pipeline=pipeline) as mesh, \
            mesh.http("users") as client:
        post = asyncio.create_task(client.post("/orders", content=b"{}"))
        while gate.entered < 2:  # noqa: ASYNC110 - the primary and its hedge wait there
            await asyncio.sleep(0.01)
        gate.open.set()

        def settled() -> bool:
            held = sum(b.stats.hangs for b in backends)
            return held == 2 or (held == 1 and "ResendRefused" in gate.ended)

        while not settled():  # noqa: ASYNC110 - polls the servers' counters
            await asyncio.sleep(0.01)
        assert sum(b.stats.hangs for b in backends) == 1  # sent once
        _hold(backends, False)
        assert (await post).status_code == 200
    assert sum(b.stats.requests for b in backends) == 1


async def test_closing_the_mesh_ends_a_body_being_read_with_an_error() -> None:
    # aiohttp leaves a reader waiting forever when its connection is closed under it;
    # the mesh closing its pools under a mesh.http() stream must end it instead.
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await done.wait()  # the rest of the body never comes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        mesh = _mesh([f"http://127.0.0.1:{port}"])
        await mesh.start()
        async with mesh.http("users").stream("GET", "/big") as response:
            chunks = response.aiter_raw()
            assert await anext(chunks) == b"x" * 10
            await mesh.aclose()
            async with asyncio.timeout(10):  # a bound: the read ends at once
                with pytest.raises(httpx.ReadError, match="mesh was closed"):
                    await anext(chunks)
        await mesh.start()
        async with mesh.aiohttp("users").get("/big") as answer:
            assert await answer.content.readexactly(10) == b"x" * 10
            reading = asyncio.create_task(answer.content.read())  # waiting for the rest
            await mesh.aclose()
            async with asyncio.timeout(10):
                with pytest.raises(aiohttp.ClientConnectionError, match="mesh was closed"):
                    await reading
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_http_large_and_streamed_bodies(backends: list[FakeBackend]) -> None:
    a = backends[0]
    big = bytes(range(256)) * 20_000  # 5 MB
    a.set(body=big, headers={"content-type": "application/octet-stream"})
    async with _mesh([a.url]) as mesh, mesh.http("users") as client:
        assert (await client.get("/big")).content == big
        async with client.stream("GET", "/big") as response:
            chunks = [c async for c in response.aiter_bytes()]
        assert b"".join(chunks) == big
        assert len(chunks) > 1
        a.set(body=None)
        response = await client.post("/upload", content=big)
        assert response.status_code == 200
    assert a.requests[-1].body == big
    assert a.requests[-1].headers["content-length"] == str(len(big))  # not chunked
    assert "transfer-encoding" not in a.requests[-1].headers


@contextlib.asynccontextmanager
async def _uploading_to(handle: Any, write: float) -> AsyncIterator[httpx.AsyncClient]:
    """``mesh.http()`` with httpx's ``write`` timeout, to a raw loopback server whose
    connections ``handle(reader, writer)`` serves; the server's side of each is cut
    at the end (the client's side, left closing with unsent bytes, waits for that)."""
    accepted: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await handle(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ml.Mesh([ml.Service("users", [f"http://127.0.0.1:{port}"],
                                       pipeline=ml.Pipeline())]) as mesh, \
                mesh.http("users", timeout=httpx.Timeout(10.0, write=write)) as client:
            yield client
    finally:
        for writer in accepted:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.1)


async def test_http_write_timeout_ends_an_upload_the_backend_never_reads() -> None:
    # aiohttp has no write timeout: an upload a backend never read held the request
    # for ever (httpx's own client raises WriteTimeout after `write` seconds).
    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    async with _uploading_to(never_reads, write=0.5) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.WriteTimeout, match=r"within 0\.5 s"):
            await client.post("/upload", content=b"x" * (64 << 20))
        assert asyncio.get_running_loop().time() - started < 8.0  # not read=10


async def test_http_upload_cut_by_the_backend_is_no_write_timeout() -> None:
    async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.transport.abort()

    async with _uploading_to(resets, write=5.0) as client:
        with pytest.raises(httpx.TransportError) as raised:
            await client.post("/upload", content=b"x" * (8 << 20))
        assert not isinstance(raised.value, httpx.WriteTimeout), raised.value


async def test_http_cancelled_mid_request_leaks_no_connection(
        backends: list[FakeBackend]) -> None:
    a = backends[0]
    a.set(latency=5.0)
    async with _mesh([a.url], pipeline=ml.Pipeline()) as mesh, \
            mesh.http("users") as client:
        task = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        connector = _transport_connector(mesh)
        assert not connector._acquired  # the half-used connection was closed
        a.set(latency=0.0)
        assert (await client.get("/again")).json()["path"] == "/again"
        assert not connector._acquired


async def test_a_call_in_flight_when_the_mesh_closes_is_not_sent_again(
        backends: list[FakeBackend]) -> None:
    # The close cuts the attempt in flight past drain_timeout (its pool closes). The
    # service's Retry then tried again on a pool made after the close, which nothing
    # would ever close: the request went out twice and its connection was left open.
    a = backends[0]
    a.set(latency=5.0)
    mesh = ml.Mesh([ml.Service("users", [a.url])], drain_timeout=0.05)
    await mesh.start()
    client = mesh.http("users")
    call = asyncio.ensure_future(client.get("/slow"))
    for _ in range(1000):  # until the request reached the backend (10 s at most)
        if a.requests:
            break
        await asyncio.sleep(0.01)
    await mesh.aclose()
    with pytest.raises(MeshClosedError, match="not sent again"):
        await asyncio.wait_for(call, 10.0)
    assert [r.path for r in a.requests] == ["/slow"]
    await client.aclose()


async def test_http_timeout_from_the_deadline(backends: list[FakeBackend]) -> None:
    a = backends[0]
    a.set(latency=2.0)
    pipeline = ml.Pipeline(ml.Timeout(0.2))
    async with _mesh([a.url], pipeline=pipeline) as mesh, mesh.http("users") as client:
        with pytest.raises(ml.TimeoutExceeded):
            await client.get("/slow")


async def test_aiohttp_errors_are_transient() -> None:
    async with aiohttp.ClientSession() as session:  # nothing listens there: refused
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await session.get(f"http://127.0.0.1:{free_port()}/")
    assert ml.is_transient(refused.value)
    assert ml.is_transient(aiohttp.ServerDisconnectedError())
    assert ml.is_transient(aiohttp.ClientPayloadError("cut"))
    assert ml.is_transient(aiohttp.SocketTimeoutError())
    assert not ml.is_transient(aiohttp.InvalidURL("x"))


# -- mesh.aiohttp() --------------------------------------------------------------------------

async def test_aiohttp_session_routes_relative_urls(backends: list[FakeBackend]) -> None:
    a, b = backends
    mesh = _mesh([a.url, b.url], headers={"X-Api-Key": "secret"})
    async with mesh:
        session = mesh.aiohttp("users")
        assert isinstance(session, aiohttp.ClientSession)
        seen = []
        for i in range(4):
            async with session.get(f"/users/{i}?q=1") as response:
                body = await response.json()
                seen.append(body["backend"])
                assert body["path"] == f"/users/{i}"
        assert sorted(seen) == sorted([a.url, b.url] * 2)  # round robin
        request = a.requests[-1]
        assert request.query == "q=1"
        assert request.headers["x-api-key"] == "secret"
        assert request.headers["host"] == a.url.removeprefix("http://")
        assert mesh.snapshot()["users"].requests == 4
    assert session.closed  # closing the mesh closed it


async def test_aiohttp_retries_elsewhere_and_returns_the_last_failure(
        backends: list[FakeBackend]) -> None:
    a, b = backends
    a.set(error_rate=1.0)
    async with _mesh([a.url, b.url]) as mesh:
        session = mesh.aiohttp("users")
        for _ in range(3):
            async with session.get("/x") as response:
                assert response.status == 200
                assert (await response.json())["backend"] == b.url
        b.set(error_rate=1.0)
        async with session.get("/x") as response:
            assert response.status == 503
            first = await response.read()
            assert await response.read() == first  # read once, kept


async def test_aiohttp_post_is_never_resent(backends: list[FakeBackend]) -> None:
    a, b = backends
    a.set(error_rate=1.0)
    b.set(error_rate=1.0)
    async with _mesh([a.url, b.url]) as mesh:
        session = mesh.aiohttp("users")
        async with session.post("/orders", data=b"{}") as response:
            assert response.status == 503
        assert a.stats.requests + b.stats.requests == 1
        async with session.post("/orders", data=b"{}",
                                headers={"Idempotency-Key": "k1"}) as response:
            assert response.status == 503
        assert a.stats.requests + b.stats.requests == 3  # with a key: retried once


async def test_aiohttp_reset_before_answer_post_is_not_resent(
        backends: list[FakeBackend]) -> None:
    a, b = backends
    a.set(reset=True)
    b.set(reset=True)
    async with _mesh([a.url, b.url]) as mesh:
        with pytest.raises(aiohttp.ClientError):
            await mesh.aiohttp("users").post("/orders", data=b"{}")
    assert a.stats.resets + b.stats.resets == 1


async def test_aiohttp_reset_runs_the_pipeline_once_and_each_attempt_once(
        backends: list[FakeBackend]) -> None:
    # aiohttp resends an idempotent request itself after a reset, around the whole
    # middleware chain: the mesh's pipeline (and the session's other middlewares)
    # would run again, and every attempt would be sent twice.
    a, b = backends
    a.set(reset=True)
    b.set(reset=True)
    seen: list[str] = []

    async def count(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        seen.append(request.method)
        return await handler(request)  # type: ignore[no-any-return]

    async with _mesh([a.url, b.url]) as mesh:
        session = mesh.aiohttp("users", middlewares=(count,))
        with pytest.raises(aiohttp.ClientError):
            await session.get("/x")
        assert seen == ["GET"]  # the logical request, once
        assert a.stats.resets + b.stats.resets == 2  # Retry(attempts=2): two sends
        assert mesh.snapshot()["users"].requests == 2


async def test_http_reset_sends_each_attempt_once(backends: list[FakeBackend]) -> None:
    a, b = backends
    a.set(reset=True)
    b.set(reset=True)
    async with _mesh([a.url, b.url]) as mesh, mesh.http("users") as client:
        with pytest.raises(httpx.ReadError):
            await client.get("/x")
    assert a.stats.resets + b.stats.resets == 2  # two attempts, one send each


async def test_aiohttp_retry_after_is_honoured(backends: list[FakeBackend]) -> None:
    a = backends[0]
    clock = FakeClock()
    a.set(error_rate=1.0, error_status=429, retry_after="7")
    pipeline = ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(0),
                                    budget=None, clock=clock))
    async with _mesh([a.url], pipeline=pipeline) as mesh, \
            mesh.aiohttp("users").get("/limited") as response:
        assert response.status == 429
    assert a.stats.requests == 2
    assert clock.sleeps == [7.0]


async def test_traceparent_on_every_attempt_of_both_clients(
        backends: list[FakeBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace

    provider = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr("meshlite.telemetry._spans._tracer", provider.get_tracer("t"))
    a, b = backends
    a.set(error_rate=1.0)
    async with _mesh([a.url, b.url]) as mesh, mesh.http("users") as client:
        session = mesh.aiohttp("users")
        for _ in range(2):
            async with session.get("/x") as response:
                assert response.status == 200
            assert (await client.get("/x")).status_code == 200
    parents = [r.headers.get("traceparent") for r in (*a.requests, *b.requests)]
    assert len(parents) >= 6  # 4 calls, some retried off a
    assert all(parents)
    assert len(set(parents)) == len(parents)  # one span, so one traceparent, per attempt
    failed_traces = {p.split("-")[1] for p in parents[:len(a.requests)]}
    assert failed_traces <= {p.split("-")[1] for p in parents[len(a.requests):]}


async def test_aiohttp_cancelled_mid_request_leaks_no_connection(
        backends: list[FakeBackend]) -> None:
    a = backends[0]
    a.set(latency=5.0)
    async with _mesh([a.url]) as mesh:
        session = mesh.aiohttp("users")
        task = asyncio.create_task(session.get("/slow"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert session.connector is not None
        assert not session.connector._acquired
        a.set(latency=0.0)
        async with session.get("/again") as response:
            assert (await response.json())["path"] == "/again"


async def test_aiohttp_other_hosts_pass_through(backends: list[FakeBackend]) -> None:
    a, b = backends
    async with _mesh([a.url]) as mesh:
        async with mesh.aiohttp("users").get(b.url + "/direct") as response:
            assert (await response.json())["backend"] == b.url
        assert mesh.snapshot()["users"].requests == 0


def test_aiohttp_of_an_unknown_service_is_a_config_error() -> None:
    with pytest.raises(ml.ConfigError, match="no service named 'nope'"):
        ml.Mesh().aiohttp("nope")


def test_routing_does_not_import_the_http_layer() -> None:
    import subprocess
    import sys

    code = ("import sys, meshlite.routing as r\n"
            "s = r.Service('users', ['http://127.0.0.1:1'], "
            "health_check=r.HealthCheck(lambda b: True))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('meshlite._http', "
            "'httpx', 'aiohttp', 'urllib3'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


async def test_http_health_check_probes_over_the_http_layer(
        backends: list[FakeBackend]) -> None:
    from meshlite.routing import HttpHealthCheck

    a, b = backends
    b.set(health_status=503)
    assert ml.HttpHealthCheck is HttpHealthCheck  # one class, from the HTTP layer
    check = HttpHealthCheck("/healthz", interval=60.0, unhealthy_threshold=1)
    async with _mesh([a.url, b.url], health_check=check,
                     headers={"X-Probe": "yes"}) as mesh:
        health = mesh.health()["users"]
        assert [h.status for h in health.backends] == ["up", "unhealthy"]
    assert a.requests[0].headers["x-probe"] == "yes"  # the service's headers, bound


async def test_clients_remember_merged_urls_until_base_url_changes(
        backends: list[FakeBackend]) -> None:
    a, b = backends
    async with _mesh([a.url]) as mesh, mesh.http("users") as client:
        assert str(client.build_request("GET", "/u/1").url) == "http://users/u/1"
        merged = client._merged["/u/1"]  # parsed and merged once...
        client.build_request("GET", "/u/1")
        assert client._merged["/u/1"] is merged  # ...then remembered
        client.base_url = b.url  # another host: passed through, merged afresh
        assert (await client.get("/u/1")).json()["backend"] == b.url


def test_sync_client_remembers_merged_urls() -> None:
    with FakeBackend() as a, _mesh([a.url]) as mesh, \
            mesh.http_sync("users", base_url="http://users/v2") as sync:
        assert sync.get("/u/1").json()["path"] == "/v2/u/1"
        assert str(sync._merged["/u/1"]) == "http://users/v2/u/1"



async def test_options_only_httpcore_honours_keep_httpcore(
        backends: list[FakeBackend]) -> None:
    a = backends[0]
    async with _mesh([a.url], http_pool={"retries": 1}) as mesh, \
            mesh.http("users") as client:
        assert (await client.get("/x")).json()["path"] == "/x"
        pools = mesh.http_pools(mesh.service("users"), True)
        transport = pools._targets[a.url].transport  # httpcore's, one per event loop
        assert [type(t) for _, t in transport._transports.items()] == [httpx.AsyncHTTPTransport]


def test_sync_client_rides_urllib3_and_maps_its_errors() -> None:
    with FakeBackend() as a, FakeBackend() as b, _mesh([a.url, b.url]) as mesh, \
            mesh.http_sync("users", timeout=0.5) as client:
        pools = mesh.http_pools(mesh.service("users"), False)
        assert (client.get("/x")).status_code == 200
        assert {type(t.transport).__name__ for t in pools._targets.values()} == {
            "Urllib3Transport"}
        a.set(hang=True)
        b.set(hang=True)
        with pytest.raises(httpx.ReadTimeout):  # a GET is retried once, then raised
            client.get("/slow")
        a.set(hang=False, down=True)
        b.set(hang=False, down=True)
        with pytest.raises(httpx.ConnectError):
            client.post("/orders", content=b"{}")  # refused: nothing sent, so retried


def test_sync_headers_reach_the_backend_once_each(servers: list[Server]) -> None:
    # The sync wire sends a plain header dict: names as the request spelled them, one
    # Host, and a static header never doubles a request's own header spelled in
    # another case (repeated names: test_http_semantics.py, each on its own line).
    a = servers[0]
    mesh = _mesh([a.url], headers={"X-Api-Key": "static", "X-Team": "core"})
    with mesh, mesh.http_sync("users") as client:
        client.get("/x", headers=[("x-api-key", "mine"), ("X-Tag", "a"), ("host", "spoofed")])
    (sent,) = [r["headers"] for r in a.requests]
    named = {k.lower(): [n for n in sent if n.lower() == k.lower()] for k in sent}
    assert named["x-api-key"] == ["x-api-key"]
    assert sent["x-api-key"] == "mine"
    assert sent["X-Team"] == "core"
    assert sent["X-Tag"] == "a"
    assert len(named["host"]) == 1
    assert a.url.endswith(sent[named["host"][0]])


async def test_aiohttp_refuses_to_race_hedges(backends: list[FakeBackend]) -> None:
    a, b = backends
    a.set(latency=0.2)
    b.set(latency=0.2)
    pipeline = ml.Pipeline(ml.Hedge(0.02))
    async with _mesh([a.url, b.url], pipeline=pipeline) as mesh, \
            mesh.aiohttp("users").get("/x") as response:
        assert response.status == 200  # the primary attempt answered
    assert a.stats.requests + b.stats.requests == 1  # the hedge never shared its request


async def test_cookies_still_kept_by_the_mesh_clients(backends: list[FakeBackend]) -> None:
    a = backends[0]
    a.set(headers={"set-cookie": "session=s1; Path=/"})
    async with _mesh([a.url]) as mesh, mesh.http("users") as client:
        await client.get("/login")
        a.set(headers={})
        await client.get("/me")
        assert client.cookies["session"] == "s1"
        client.cookies = {"other": "o"}  # replaced as httpx would
        await client.get("/again")
    assert "session=s1" in a.requests[1].headers["cookie"]
    assert a.requests[2].headers["cookie"] == "other=o"


async def test_aiohttp_sends_each_of_many_paths_to_its_path(
        backends: list[FakeBackend]) -> None:
    # The session remembers a URL per path and backend, up to a bound it then
    # empties: past the bound every request still reaches its own path and query.
    a, b = backends
    async with _mesh([a.url, f"{b.url}/base/"]) as mesh:
        session = mesh.aiohttp("users")
        for i in range(600):
            async with session.get(f"/items/{i % 300}?n={i}") as response:
                assert response.status == 200
    assert len(a.requests) == len(b.requests) == 300  # round robin
    assert all(r.path.startswith("/items/") for r in a.requests)
    assert all(r.path.startswith("/base/items/") for r in b.requests)
    sent = sorted((r.path.removeprefix("/base"), r.query) for r in (*a.requests, *b.requests))
    assert sent == sorted((f"/items/{i % 300}", f"n={i}") for i in range(600))


async def test_aiohttp_caller_name_follows_the_environment(
        backends: list[FakeBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = backends
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    async with _mesh([a.url]) as mesh:
        session = mesh.aiohttp("users")
        names = []
        for value in ("orders", "orders", "billing", None):
            if value is None:
                monkeypatch.delenv("OTEL_SERVICE_NAME")
            else:
                monkeypatch.setenv("OTEL_SERVICE_NAME", value)
            async with session.get("/x") as response:
                assert response.status == 200
            names.append(a.requests[-1].headers.get("x-meshlite-caller"))
    assert names == ["orders", "orders", "billing", None]


async def test_aiohttp_forwards_an_incoming_trace_without_a_tracer_provider(
        backends: list[FakeBackend]) -> None:
    # Without an SDK the mesh makes no spans, but a trace context the application
    # attached (an inbound request's) still reaches the backend.
    from opentelemetry import context, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    a, _ = backends
    incoming = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True,
                           trace_flags=TraceFlags(1))
    async with _mesh([a.url]) as mesh:
        session = mesh.aiohttp("users")
        async with session.get("/x") as response:
            assert response.status == 200
        assert "traceparent" not in a.requests[-1].headers  # nothing to forward
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(incoming)))
        try:
            async with session.get("/x") as response:
                assert response.status == 200
        finally:
            context.detach(token)
    assert a.requests[-1].headers["traceparent"].split("-")[1] == f"{0x1234:032x}"


def test_stamp_reads_the_opentelemetry_context_the_api_reads() -> None:
    # stamp() reads the current OpenTelemetry context through the runtime's own
    # variable: it must see exactly what the public API sees.
    from opentelemetry import context

    from meshlite._http._outgoing import _otel_context

    assert _otel_context() == context.get_current() == {}
    token = context.attach(context.set_value("k", "v"))
    try:
        assert _otel_context() is context.get_current()
        assert _otel_context()["k"] == "v"
    finally:
        context.detach(token)
    assert not _otel_context()


@pytest.mark.parametrize("address", ["http://127.0.0.1:9/v1?tenant=a", "http://127.0.0.1:9/#x",
                                     "grpc-node-1"])
async def test_every_http_client_refuses_a_backend_it_cannot_send_to(address: str) -> None:
    # A query or fragment would be replaced by each request's own: refused, not dropped.
    why = re.escape("is not an http(s) base URL" if address == "grpc-node-1"
                    else "has a query or fragment")
    service = ml.Service("users", [address], pipeline=ml.Pipeline())
    async with ml.Mesh([service]) as mesh:
        async with mesh.http("users") as client:
            with pytest.raises(ml.ConfigError, match=rf"{why}, (so|which) mesh\.http\(\)"):
                await client.get("/u/1")
        with mesh.http_sync("users") as sync_client, pytest.raises(ml.ConfigError, match=why):
            sync_client.get("/u/1")
        async with mesh.aiohttp("users") as session:
            with pytest.raises(ml.ConfigError, match=rf"{why}, (so|which) mesh\.aiohttp\(\)"):
                await session.get("/u/1")
        # mesh.call() hands the address to the caller's function, as it is.
        assert await mesh.call("users", lambda backend: backend.address) == address


def test_the_first_http_client_of_a_process_imports_the_wire() -> None:
    # docs/deploy.md takes the client in the lifespan for this reason: the first
    # mesh.http() imports httpx and aiohttp, which a first request would wait for.
    script = (
        "import sys, asyncio\n"
        "import meshlite as ml\n"
        "mesh = ml.Mesh([ml.Service('users', ['http://127.0.0.1:9'])])\n"
        "assert 'httpx' not in sys.modules and 'aiohttp' not in sys.modules\n"
        "async def main():\n"
        "    mesh.http('users')\n"
        "    assert 'httpx' in sys.modules and 'aiohttp' in sys.modules\n"
        "asyncio.run(main())\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_an_aiohttp_session_outside_an_event_loop_says_where_to_take_it() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    with pytest.raises(RuntimeError, match=r"mesh.aiohttp\('users'\) makes an aiohttp"
                                           r".ClientSession, which needs a running event loop"):
        mesh.aiohttp("users")
    assert mesh._sessions is None  # nothing made, nothing adopted
