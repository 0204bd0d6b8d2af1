"""mesh.http() / mesh.http_sync(): real loopback HTTP backends, no mocked transports
(except where an override to a mock transport is the point)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from _system import free_port
from opentelemetry.sdk.trace import TracerProvider

import meshlite as ml
from meshlite.http import ResponseStatusError, parse_retry_after
from meshlite.mesh import Mesh
from meshlite.routing import HttpHealthCheck, OutlierDetection, Service
from meshlite.testing import FakeClock


class Server:
    """A small HTTP/1.1 server on a free loopback port, in a thread."""

    def __init__(self) -> None:
        self.status = 200
        self.health_status = 200
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.peers: set[int] = set()
        self.released = threading.Event()
        self.arrived = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.peers.add(self.client_address[1])
                if self.path.endswith("/healthz"):
                    status, extra = owner.health_status, {}
                else:
                    owner.requests.append({"method": self.command, "path": self.path,
                                           "headers": dict(self.headers), "body": body})
                    owner.arrived.set()
                    status, extra = owner.status, owner.headers
                    if owner.delay:
                        owner.released.wait(owner.delay)
                payload = f"{status} from {owner.port}".encode()
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started = [Server() for _ in range(3)]
    yield started
    for s in started:
        s.stop()


def fast_retry(attempts: int = 2, **kwargs: Any) -> ml.Pipeline:
    return ml.Pipeline(ml.Retry(attempts=attempts, backoff=ml.backoff.constant(0),
                                budget=None, **kwargs))


def service(backends: list[str], **kwargs: Any) -> Service:
    kwargs.setdefault("balancer", "round_robin")
    kwargs.setdefault("pipeline", fast_retry())
    return Service("users", backends, **kwargs)


async def test_relative_urls_are_routed_round_robin(servers: list[Server]) -> None:
    a, b, _ = servers
    async with Mesh([service([a.url, b.url])]) as mesh:
        client = mesh.http("users")
        answers = [(await client.get("/users/1?x=2")).text for _ in range(4)]
    assert sorted(answers) == sorted([f"200 from {a.port}"] * 2 + [f"200 from {b.port}"] * 2)
    for s in (a, b):
        assert [r["path"] for r in s.requests] == ["/users/1?x=2"] * 2
        assert s.requests[0]["headers"]["Host"] == f"127.0.0.1:{s.port}"


async def test_backend_path_prefix_is_kept(servers: list[Server]) -> None:
    a = servers[0]
    async with Mesh([service([a.url + "/v1/"])]) as mesh:
        await mesh.http("users").get("/users/1")
    assert a.requests[0]["path"] == "/v1/users/1"


async def test_one_pool_per_backend_shared_by_clients(servers: list[Server]) -> None:
    a = servers[0]
    async with Mesh([service([a.url])]) as mesh:
        first, second = mesh.http("users"), mesh.http("users")
        for _ in range(3):
            await first.get("/x")
            await second.get("/y")
        await first.aclose()  # closing a client leaves the shared pool open
        assert (await second.get("/z")).status_code == 200
    assert len(a.requests) == 7
    assert len(a.peers) == 1  # one kept-alive connection served every request


def test_sync_client_routes_and_pools(servers: list[Server]) -> None:
    a, b, _ = servers
    with Mesh([service([a.url, b.url])]) as mesh, mesh.http_sync("users") as client:
        codes = [client.get("/s").status_code for _ in range(4)]
    assert codes == [200] * 4
    assert len(a.requests) == len(b.requests) == 2
    assert len(a.peers) == len(b.peers) == 1


async def test_5xx_is_retried_on_another_backend(servers: list[Server]) -> None:
    a, b, _ = servers
    a.status = 503
    async with Mesh([service([a.url, b.url], outlier_detection=None)]) as mesh:
        client = mesh.http("users")
        answers = [await client.get("/r") for _ in range(4)]
    assert [r.status_code for r in answers] == [200] * 4
    assert len(b.requests) == 4
    assert len(a.requests) == 2  # round robin sent half the first attempts there


async def test_exhausted_5xx_returns_the_last_response(servers: list[Server]) -> None:
    a, b, _ = servers
    a.status = b.status = 502
    async with Mesh([service([a.url, b.url])]) as mesh:
        response = await mesh.http("users").get("/r")
    assert response.status_code == 502
    assert response.text.startswith("502 from")
    assert len(a.requests) + len(b.requests) == 2
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()


def test_exhausted_5xx_sync_returns_the_last_response(servers: list[Server]) -> None:
    a = servers[0]
    a.status = 500
    with Mesh([service([a.url])]) as mesh:
        response = mesh.http_sync("users").get("/r")
    assert response.status_code == 500
    assert len(a.requests) == 2
    assert response.text == f"500 from {a.port}"


async def test_4xx_is_an_answer_not_a_failure(servers: list[Server]) -> None:
    a = servers[0]
    a.status = 404
    async with Mesh([service([a.url], outlier_detection=OutlierDetection(1))]) as mesh:
        response = await mesh.http("users").get("/missing")
        snap = mesh.snapshot()["users"].backends[0]
    assert response.status_code == 404
    assert len(a.requests) == 1
    assert (snap.errors, snap.status) == (0, "up")


@pytest.mark.parametrize(
    ("method", "headers", "retry_non_idempotent", "sent"),
    [
        ("POST", {}, False, 1),
        ("PATCH", {}, False, 1),
        ("POST", {"Idempotency-Key": "k1"}, False, 2),
        ("POST", {}, True, 2),
        ("PUT", {}, False, 2),
        ("DELETE", {}, False, 2),
    ],
)
async def test_idempotency_rules(servers: list[Server], method: str, headers: dict[str, str],
                                 retry_non_idempotent: bool, sent: int) -> None:
    a, b, _ = servers
    a.status = b.status = 503
    svc = service([a.url, b.url], retry_non_idempotent=retry_non_idempotent)
    async with Mesh([svc]) as mesh:
        response = await mesh.http("users").request(method, "/w", content=b"body",
                                                    headers=headers)
    assert response.status_code == 503
    assert len(a.requests) + len(b.requests) == sent


async def test_post_is_resent_after_a_connection_error(servers: list[Server]) -> None:
    a = servers[0]
    dead = f"http://127.0.0.1:{free_port()}"
    async with Mesh([service([dead, a.url], outlier_detection=None)]) as mesh:
        client = mesh.http("users")
        codes = [(await client.post("/orders", json={"n": i})).status_code for i in range(4)]
    assert codes == [200] * 4  # nothing had been sent to the dead backend
    assert [json.loads(r["body"]) for r in a.requests] == [{"n": i} for i in range(4)]


async def test_post_that_timed_out_is_not_resent(servers: list[Server]) -> None:
    a, b, _ = servers
    a.delay = b.delay = 30.0  # released when the servers stop
    async with Mesh([service([a.url, b.url], outlier_detection=None)]) as mesh:
        client = mesh.http("users", timeout=0.2)
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/orders", json={})
        with pytest.raises(httpx.ReadTimeout):  # a GET is retried on the other backend
            await client.get("/orders")
    assert len(a.requests) + len(b.requests) == 3


async def test_streamed_body_is_never_sent_twice(servers: list[Server]) -> None:
    a, b, _ = servers
    a.status = b.status = 503

    async def body() -> Any:
        yield b"chunk"

    async with Mesh([service([a.url, b.url])]) as mesh:
        response = await mesh.http("users").put("/w", content=body())
    assert response.status_code == 503
    assert len(a.requests) + len(b.requests) == 1


async def test_429_retry_after_is_honoured(servers: list[Server], clock: FakeClock) -> None:
    a = servers[0]
    a.status = 429
    a.headers = {"Retry-After": "7"}
    pipeline = ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(0), budget=None,
                                    clock=clock))
    async with Mesh([service([a.url], pipeline=pipeline)]) as mesh:
        response = await mesh.http("users").get("/limited")
    assert response.status_code == 429
    assert len(a.requests) == 2
    assert clock.sleeps == [7.0]


async def test_retry_after_beyond_the_cap_returns_the_answer_at_once(
        servers: list[Server], clock: FakeClock) -> None:
    a = servers[0]
    a.status = 503
    a.headers = {"Retry-After": "86400"}
    pipeline = ml.Pipeline(ml.Retry(attempts=3, budget=None, clock=clock))
    async with Mesh([service([a.url], pipeline=pipeline)]) as mesh:
        response = await mesh.http("users").get("/busy")
    assert response.status_code == 503
    assert len(a.requests) == 1
    assert clock.sleeps == []


async def test_a_retry_after_date_is_read_on_the_servers_clock(
        servers: list[Server], clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    import email.utils
    import http.server
    import time

    ahead = time.time() + 3600  # the server's clock runs an hour ahead of this host's
    monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "date_time_string",
                        lambda self, timestamp=None: email.utils.formatdate(ahead, usegmt=True))
    a = servers[0]
    a.status = 503
    a.headers = {"Retry-After": email.utils.formatdate(ahead + 7, usegmt=True)}
    pipeline = ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(0), budget=None,
                                    clock=clock))
    async with Mesh([service([a.url], pipeline=pipeline)]) as mesh:
        response = await mesh.http("users").get("/busy")
    assert response.status_code == 503
    assert len(a.requests) == 2
    assert clock.sleeps == [7.0]  # not 3607 s (over the cap: no retry at all)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_deadline_becomes_the_request_timeout(servers: list[Server]) -> None:
    a = servers[0]
    a.delay = 30.0  # released when the server stops
    pipeline = ml.Pipeline(ml.Timeout(0.2), ml.Retry(attempts=1, budget=None))
    with Mesh([service([a.url], pipeline=pipeline)]) as mesh:
        client = mesh.http_sync("users", timeout=None)  # only the deadline bounds it
        with pytest.raises((httpx.TimeoutException, ml.TimeoutExceeded)):
            client.get("/slow")


async def test_deadline_reaches_the_backend_transport(servers: list[Server]) -> None:
    from meshlite._http._pools import Pools as _Pools
    from meshlite._http._send import Call as _Call

    svc = service([servers[0].url])
    request = httpx.Request("GET", "http://users/x", extensions={
        "timeout": {"connect": 5.0, "read": 0.01, "write": None, "pool": 5.0}})
    call = _Call(request, _Pools(svc, True), svc)
    ctx = ml.CallContext(print, (), {}, "GET /x")
    clock = FakeClock()
    ctx.deadline, ctx.clock = 2.0, clock
    call.ctx = ctx
    attempt = call.attempt(call.pools.get(svc.backends[0]))
    assert attempt.extensions["timeout"] == {"connect": 2.0, "read": 0.01, "write": 2.0,
                                             "pool": 2.0}
    assert attempt.url == httpx.URL(servers[0].url + "/x")
    await call.pools.aclose()


async def test_traceparent_injected_only_when_tracing(servers: list[Server]) -> None:
    a = servers[0]
    tracer = TracerProvider().get_tracer("test")
    async with Mesh([service([a.url])]) as mesh:
        client = mesh.http("users")
        await client.get("/untraced")
        with tracer.start_as_current_span("caller") as span:
            await client.get("/traced")
            trace_id = format(span.get_span_context().trace_id, "032x")
    untraced, traced = a.requests
    assert "traceparent" not in {k.lower() for k in untraced["headers"]}
    assert trace_id in traced["headers"]["traceparent"]


async def test_outlier_is_ejected_and_traffic_moves(servers: list[Server]) -> None:
    a, b, _ = servers
    a.status = 500
    events: list[ml.Event] = []
    svc = service([a.url, b.url], outlier_detection=OutlierDetection(consecutive_failures=2))
    async with Mesh([svc]) as mesh:
        mesh.add_hook(events.append)
        client = mesh.http("users")
        codes = [(await client.get("/e")).status_code for _ in range(8)]
        health = mesh.health()["users"]
    assert codes == [200] * 8
    assert len(a.requests) == 2  # ejected after its second failure
    assert health.status == "degraded"
    assert [h.status for h in health.backends] == ["ejected", "up"]
    assert any(type(e).__name__ == "BackendEjected" for e in events)


async def test_http_health_check_marks_backends(servers: list[Server]) -> None:
    a, b, _ = servers
    b.health_status = 503
    check = HttpHealthCheck("/healthz", interval=60.0, unhealthy_threshold=1)
    async with Mesh([service([a.url, b.url], health_check=check)]) as mesh:
        health = mesh.health()["users"]
        client = mesh.http("users")
        for _ in range(4):
            await client.get("/h")
    assert [(h.status, "503" in h.reason) for h in health.backends] == [
        ("up", False), ("unhealthy", True)]
    assert len(a.requests) == 4
    assert b.requests == []


def test_http_health_check_under_a_sync_mesh(servers: list[Server]) -> None:
    a, b, _ = servers
    a.health_status = 500
    check = HttpHealthCheck(interval=60.0, unhealthy_threshold=1)
    with Mesh([service([a.url, b.url], health_check=check)]) as mesh:
        statuses = [h.status for h in mesh.health()["users"].backends]
        codes = {mesh.http_sync("users").get("/x").text for _ in range(3)}
    assert statuses == ["unhealthy", "up"]
    assert codes == {f"200 from {b.port}"}


async def test_override_with_a_mock_transport(servers: list[Server]) -> None:
    mesh = Mesh([service([servers[0].url])])
    mock = httpx.MockTransport(lambda request: httpx.Response(299, text=request.url.path))
    async with mesh:
        client = mesh.http("users")
        with mesh.override("users", mock):
            faked = await client.get("/who")
        real = await client.get("/who")
    assert (faked.status_code, faked.text) == (299, "/who")
    assert real.status_code == 200


async def test_override_with_another_backend(servers: list[Server]) -> None:
    a, b, _ = servers
    async with Mesh([service([a.url])]) as mesh:
        client = mesh.http("users")
        with mesh.override("users", b.url):
            await client.get("/fake")
    assert [r["path"] for r in b.requests] == ["/fake"]
    assert a.requests == []


async def test_other_hosts_pass_through(servers: list[Server]) -> None:
    a, b, _ = servers
    async with Mesh([service([a.url])]) as mesh:
        response = await mesh.http("users").get(b.url + "/direct")
    assert response.text == f"200 from {b.port}"
    assert a.requests == []


def test_unknown_service_lists_the_known_ones() -> None:
    mesh = Mesh([Service("users", ["http://127.0.0.1:1"]), Service("orders", [])])
    with pytest.raises(ml.ConfigError, match="known services: orders, users"):
        mesh.http("nope")
    with pytest.raises(ml.ConfigError, match="transport"):
        mesh.http("users", transport=httpx.MockTransport(lambda r: httpx.Response(200)))


async def test_non_http_backend_is_a_config_error() -> None:
    async with Mesh([Service("users", ["grpc-node-1"], pipeline=ml.Pipeline())]) as mesh:
        with pytest.raises(ml.ConfigError, match="not an http"):
            await mesh.http("users").get("/x")


async def test_response_status_error_is_what_policies_see(servers: list[Server]) -> None:
    a = servers[0]
    a.status = 503
    a.headers = {"Retry-After": "2"}
    seen: list[BaseException] = []

    def record(error: BaseException) -> Any:
        seen.append(error)
        raise error

    pipeline = ml.Pipeline(ml.Fallback(handler=record))
    async with Mesh([service([a.url], pipeline=pipeline)]) as mesh:
        response = await mesh.http("users").get("/x")
    assert response.status_code == 503
    error = seen[0]
    assert isinstance(error, ResponseStatusError)
    assert (error.status_code, error.retry_after, error.service) == (503, 2.0, "users")


async def test_cancelled_request_frees_the_backend(servers: list[Server]) -> None:
    a = servers[0]
    a.delay = 30.0
    async with Mesh([service([a.url])]) as mesh:
        task = asyncio.ensure_future(mesh.http("users").get("/slow"))
        await asyncio.to_thread(a.arrived.wait, 10.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        snap = mesh.snapshot()["users"]
    assert (snap.in_flight, snap.errors) == (0, 0)
    assert mesh.in_flight == 0


def test_a_transport_given_to_a_sync_client_names_http_sync() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    with pytest.raises(ml.ConfigError, match=r"^mesh\.http_sync\('users'\): transport= cannot"):
        mesh.http_sync("users", transport=httpx.HTTPTransport())
