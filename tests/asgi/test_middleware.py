"""MeshMiddleware under real uvicorn servers, called with real HTTP clients: trace
context and deadlines in, deadlines and callers out, error mapping."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from observability.otlp_receiver import OtlpReceiver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

import meshlite as ml
import meshlite.asgi
from meshlite import telemetry
from meshlite.testing import AsgiServer, FakeBackend

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


pytestmark = pytest.mark.usefixtures("otel_isolated")


def starlette_app(mesh: ml.Mesh, seen: dict[str, Any]) -> Starlette:
    async def orders(request: Request) -> JSONResponse:
        seen["remaining"] = ml.remaining()
        r = await mesh.http("inventory").get("/stock")
        return JSONResponse({"stock": r.status_code})

    async def limited(request: Request) -> JSONResponse:
        raise ml.RateLimitedError("over", policy="rate_limit", retry_after=2.5)

    async def broken(request: Request) -> JSONResponse:
        raise ml.CircuitOpenError("open", policy="circuit_breaker")

    return Starlette(routes=[StarletteRoute("/orders", orders),
                             StarletteRoute("/limited", limited),
                             StarletteRoute("/broken", broken)])


async def test_deadline_and_caller_travel_on_and_remaining_is_the_budget() -> None:
    seen: dict[str, Any] = {}
    async with FakeBackend() as inventory:
        mesh = ml.Mesh([ml.Service("inventory", [inventory.url])], name="orders")
        app = meshlite.asgi.MeshMiddleware(starlette_app(mesh, seen), mesh=mesh)
        async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
            r = await client.get(server.url + "/orders",
                                 headers={"x-meshlite-deadline": "2000"})
    assert r.status_code == 200
    # Less by the time spent (half of it at most, a loaded machine's bound): the header's
    # milliseconds read as seconds, not as milliseconds twice over or not at all.
    assert 1.0 < seen["remaining"] <= 2.0
    sent = inventory.requests[-1].headers
    assert 0 < int(sent["x-meshlite-deadline"]) < 2000  # reduced by the time spent
    assert sent["x-meshlite-caller"] == "orders"


async def test_grpc_timeout_is_accepted_and_no_header_means_no_deadline() -> None:
    seen: dict[str, Any] = {}
    async with FakeBackend() as inventory:
        mesh = ml.Mesh([ml.Service("inventory", [inventory.url])])
        app = meshlite.asgi.MeshMiddleware(starlette_app(mesh, seen), mesh=mesh)
        async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
            await client.get(server.url + "/orders", headers={"grpc-timeout": "3S"})
            assert 1.5 < seen["remaining"] <= 3.0  # as above
            await client.get(server.url + "/orders")
            assert seen["remaining"] is None
            assert "x-meshlite-deadline" not in inventory.requests[-1].headers
            assert "x-meshlite-caller" not in inventory.requests[-1].headers  # no name


async def test_a_malformed_or_repeated_deadline_header() -> None:
    seen: dict[str, Any] = {}
    async with FakeBackend() as inventory:
        mesh = ml.Mesh([ml.Service("inventory", [inventory.url])])
        app = meshlite.asgi.MeshMiddleware(starlette_app(mesh, seen), mesh=mesh)
        async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
            await client.get(server.url + "/orders",
                             headers={"x-meshlite-deadline": "soon", "grpc-timeout": "3S"})
            assert seen["remaining"] is not None
            assert 1.5 < seen["remaining"] <= 3.0  # as above
            await client.get(server.url + "/orders",
                             headers={"x-meshlite-deadline": "1000", "grpc-timeout": "3S"})
            assert 0.5 < seen["remaining"] <= 1.0  # both valid: x-meshlite-deadline wins
            # A header repeated (a proxy's own line before or after the client's) counts
            # with its smallest valid value, in either order: never lengthened.
            for lines in ([("x-meshlite-deadline", "1000"), ("x-meshlite-deadline", "60000")],
                          [("x-meshlite-deadline", "60000"), ("x-meshlite-deadline", "1000")],
                          [("x-meshlite-deadline", "junk"), ("x-meshlite-deadline", "1000"),
                           ("x-meshlite-deadline", "")],
                          [("grpc-timeout", "60S"), ("grpc-timeout", "1S")],
                          # folded by a proxy into one line (RFC 9110), once was none
                          [("x-meshlite-deadline", "60000, 1000")],
                          [("grpc-timeout", "1S, 60S")]):
                r = await client.get(server.url + "/orders", headers=lines)
                assert r.status_code == 200
                assert 0.5 < seen["remaining"] <= 1.0, lines  # as above


@pytest.mark.parametrize("value", ["1e3", "1_000", "+1000", "1000e-3", "infinity", "nan",
                                   "-5", ".5", "1000."])
async def test_a_deadline_not_written_as_documented_counts_as_none(value: str) -> None:
    # Python's float() takes each of these; another reader of the header (a proxy, a
    # service in another language) would read something else or nothing. As with any
    # malformed value, a valid grpc-timeout then applies.
    seen: dict[str, Any] = {}
    async with FakeBackend() as inventory:
        mesh = ml.Mesh([ml.Service("inventory", [inventory.url])])
        app = meshlite.asgi.MeshMiddleware(starlette_app(mesh, seen), mesh=mesh)
        async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
            r = await client.get(server.url + "/orders", headers=[
                ("x-meshlite-deadline", value.encode()), ("grpc-timeout", "3S")])
            assert r.status_code == 200
            assert 1.5 < seen["remaining"] <= 3.0  # the grpc-timeout's


async def test_expired_request_is_504_without_running_the_handler() -> None:
    ran: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with AsgiServer(meshlite.asgi.MeshMiddleware(app)) as server, \
            httpx.AsyncClient() as client:
        r = await client.get(server.url + "/x", headers={"x-meshlite-deadline": "0"})
        assert r.status_code == 504
        assert r.json()["error"] == "deadline_exceeded"
        assert ran == []
        assert (await client.get(server.url + "/x",
                                 headers={"x-meshlite-deadline": "junk"})).status_code == 200


async def test_handler_running_past_the_callers_deadline_is_cancelled_with_504() -> None:
    cancelled = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with AsgiServer(meshlite.asgi.MeshMiddleware(app)) as server, \
            httpx.AsyncClient() as client:
        r = await client.get(server.url + "/", headers={"x-meshlite-deadline": "100"})
    assert r.status_code == 504
    assert cancelled.is_set()


async def test_meshlite_errors_map_to_statuses_with_retry_after() -> None:
    mesh = ml.Mesh()
    app = meshlite.asgi.MeshMiddleware(starlette_app(mesh, {}), mesh=mesh)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        limited = await client.get(server.url + "/limited")
        broken = await client.get(server.url + "/broken")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"  # rounded up to whole seconds
    assert broken.status_code == 503
    assert broken.json() == {"error": "circuit_open",
                             "message": "a dependency is failing: retry later"}


@pytest.mark.parametrize("wait", [float("inf"), float("nan")])
async def test_an_unknown_retry_after_is_a_429_without_the_header(wait: float) -> None:
    async def limited(request: Request) -> JSONResponse:
        raise ml.RateLimitedError("over", policy="rate_limit", retry_after=wait)

    app = meshlite.asgi.MeshMiddleware(Starlette(routes=[StarletteRoute("/", limited)]))
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        r = await client.get(server.url + "/")
    assert r.status_code == 429
    assert "retry-after" not in r.headers
    assert r.json()["error"] == "rate_limited"


async def test_exception_handlers_alone_map_errors_in_starlette() -> None:
    async def limited(request: Request) -> JSONResponse:
        raise ml.TimeoutExceeded("slow", policy="timeout")

    app = Starlette(routes=[StarletteRoute("/", limited)],
                    exception_handlers=meshlite.asgi.exception_handlers())
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        assert (await client.get(server.url + "/")).status_code == 504


async def test_fastapi_rate_limit_in_reject_mode_answers_429() -> None:
    from fastapi import FastAPI

    api = FastAPI()
    quota = ml.Pipeline(ml.RateLimit(1.0, per=60.0, mode="reject"))

    @api.get("/items")
    async def items() -> dict[str, int]:
        return await quota.acall(_one)

    app = meshlite.asgi.MeshMiddleware(api)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        first = await client.get(server.url + "/items")
        second = await client.get(server.url + "/items")
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1


async def _one() -> dict[str, int]:
    return {"n": 1}


async def test_server_span_continues_the_trace_and_mesh_calls_are_its_children() -> None:
    with OtlpReceiver() as receiver:
        telemetry.configure("orders", otlp_endpoint=receiver.url)
        async with FakeBackend() as inventory:
            mesh = ml.Mesh([ml.Service("inventory", [inventory.url])])
            app = meshlite.asgi.MeshMiddleware(starlette_app(mesh, {}), mesh=mesh,
                                               routes=[meshlite.asgi.Route("/orders")])
            async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
                r = await client.get(server.url + "/orders", headers={
                    "traceparent": PARENT, "baggage": "tenant=acme",
                    "x-meshlite-caller": "gateway"})
        assert r.status_code == 200
        telemetry.current().force_flush()  # type: ignore[union-attr]
        server_span = receiver.span("GET /orders")
        assert server_span.kind == "SERVER"
        assert server_span.trace_id == TRACE_ID
        assert server_span.parent_span_id == "00f067aa0ba902b7"
        assert server_span.attributes["http.response.status_code"] == 200
        assert server_span.attributes["meshlite.caller"] == "gateway"
        (attempt,) = [s for s in receiver.spans if s.kind == "CLIENT"]
        by_id = {s.span_id: s for s in receiver.spans}
        call = by_id[attempt.parent_span_id]  # the mesh call's span, under the request's
        assert call.parent_span_id == server_span.span_id
        assert {s.trace_id for s in receiver.spans} == {TRACE_ID}
    sent = inventory.requests[-1].headers
    assert sent["traceparent"].split("-")[2] == attempt.span_id
    assert "tenant=acme" in sent["baggage"]
    assert mesh.name == "orders"  # from telemetry.configure()


async def test_sync_handlers_see_the_deadline_and_forward_it() -> None:
    seen: dict[str, Any] = {}

    def stock(request: Request) -> JSONResponse:  # Starlette runs it in a thread
        seen["remaining"] = ml.remaining()
        with mesh.http_sync("inventory") as client:
            client.get("/stock")
        return JSONResponse({})

    async with FakeBackend() as inventory:
        mesh = ml.Mesh([ml.Service("inventory", [inventory.url])], name="orders")
        app = meshlite.asgi.MeshMiddleware(Starlette(routes=[StarletteRoute("/", stock)]),
                                           mesh=mesh)
        async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
            r = await client.get(server.url + "/", headers={"grpc-timeout": "1500m"})
    assert r.status_code == 200
    assert 0.75 < seen["remaining"] <= 1.5  # as above
    assert 0 < int(inventory.requests[-1].headers["x-meshlite-deadline"]) < 1500


async def test_without_an_sdk_the_callers_trace_context_still_travels_on() -> None:
    async with FakeBackend() as inventory:
        mesh = ml.Mesh([ml.Service("inventory", [inventory.url])])
        app = meshlite.asgi.MeshMiddleware(starlette_app(mesh, {}), mesh=mesh)
        async with mesh, AsgiServer(app) as server, httpx.AsyncClient() as client:
            await client.get(server.url + "/orders", headers={"traceparent": PARENT})
            carried = inventory.requests[-1].headers.get("traceparent", "")
            await client.get(server.url + "/orders")
            fresh = inventory.requests[-1].headers
    assert carried.split("-")[1] == TRACE_ID  # nothing recorded here, the trace goes on
    assert "traceparent" not in fresh  # no SDK, no incoming context: no span at all


async def test_a_made_up_method_is_not_in_the_server_spans_name() -> None:
    import uvicorn

    from meshlite.observability._dashboard._uvicorn import Background, bind, start

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with OtlpReceiver() as receiver:
        telemetry.configure("orders", otlp_endpoint=receiver.url)
        app = meshlite.asgi.MeshMiddleware(ok, routes=[meshlite.asgi.Route("/orders/{id}")])
        # h11, uvicorn's parser without its [standard] extra, accepts any method token.
        server = Background(uvicorn.Config(app, http="h11", lifespan="off", log_config=None,
                                            log_level="error"))
        sock = bind("127.0.0.1", 0)
        serving = await start(server, sock)
        try:
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{sock.getsockname()[1]}/orders/1"
                assert (await client.request("X-RANDOM-1", url)).status_code == 200
                assert (await client.get(url)).status_code == 200
        finally:
            server.should_exit = True
            await serving
        telemetry.current().force_flush()  # type: ignore[union-attr]
        assert sorted(s.name for s in receiver.spans) == ["GET /orders/{id}",
                                                           "HTTP /orders/{id}"]
        made_up = receiver.span("HTTP /orders/{id}")
        assert made_up.attributes["http.request.method"] == "_OTHER"
        assert made_up.attributes["http.request.method_original"] == "X-RANDOM-1"


class OrderStoreDown(Exception):
    """An application's own error, unhandled by the app."""


async def test_a_failed_requests_error_type_is_the_qualified_class_name() -> None:
    # As the client side's attempt spans write it (the HTTP semantic conventions ask
    # for the fully qualified class name), so both sides of a call name it alike.
    async def down(request: Request) -> JSONResponse:
        raise OrderStoreDown("no store")

    with OtlpReceiver() as receiver:
        telemetry.configure("orders", otlp_endpoint=receiver.url)
        app = meshlite.asgi.MeshMiddleware(Starlette(routes=[StarletteRoute("/down", down)]),
                                           routes=[meshlite.asgi.Route("/down")])
        async with AsgiServer(app) as server, httpx.AsyncClient() as client:
            assert (await client.get(server.url + "/down")).status_code == 500
        telemetry.current().force_flush()  # type: ignore[union-attr]
        span = receiver.span("GET /down")
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == f"{__name__}.OrderStoreDown"
