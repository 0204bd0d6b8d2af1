"""A route quota whose Redis store stops answering falls back as the store's
``on_error`` says, and reports it as the outbound policies do: counted in the
mesh's ``meshlite_store_fallbacks_total`` (labelled with the route), emitted as
``StoreFallback`` to the mesh's hooks. A real redis-server, stopped mid-test; real
uvicorn and HTTP clients."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _system import require_program

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.observability import render
from meshlite.testing import AsgiServer

pytest.importorskip("redis")


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def value(text: str, line: str) -> float:
    found = [x.removeprefix(line) for x in text.splitlines() if x.startswith(line)]
    assert found, f"no {line!r} in the exposition"
    return float(found[0])


@pytest.mark.parametrize(("on_error", "answers"), [
    ("local", [200, 200, 200]),  # the process's own quota (burst 10)
    ("deny", [429, 429, 429]),
])
async def test_an_unreachable_store_is_reported_like_the_outbound_policies(
        on_error: str, answers: list[int]) -> None:
    binary = require_program("redis-server", "redis-server")
    from state.redis_server import RedisServer

    from meshlite.state import RedisStore, StoreFallback

    server = RedisServer(binary).start()
    store = RedisStore(server.url, on_error=on_error, retry_interval=60.0, timeout=2.0)
    mesh = ml.Mesh([], name="orders")
    seen: list[ml.Event] = []
    mesh.add_hook(seen.append)
    app = MeshMiddleware(ok, mesh=mesh, routes=[
        Route("/orders/{id}", rate=10.0, per=1.0, store=store)])
    try:
        async with AsgiServer(app) as http, httpx.AsyncClient(base_url=http.url) as client:
            assert (await client.get("/orders/1")).status_code == 200  # through Redis
            server.kill()  # the store becomes unreachable
            codes = [(await client.get("/orders/1")).status_code for _ in range(3)]
    finally:
        server.close()
        store.close()
    assert codes == answers
    fallbacks = [e for e in seen if isinstance(e, StoreFallback)]
    assert [(e.policy, e.service, e.action) for e in fallbacks] == [
        ("rate_limit", "inbound:/orders/{id}", on_error)] * 3
    text = render(mesh)
    assert value(text, 'meshlite_store_fallbacks_total{service="inbound:/orders/{id}",'
                       f'policy="rate_limit",action="{on_error}"}} ') == 3
    assert store.fallbacks == {("rate_limit", on_error): 3}


async def test_routes_replaced_by_configure_report_theirs() -> None:
    from state.redis_server import free_port

    from meshlite.state import RedisStore

    # Nothing listens on the port: every decision is refused at once.
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", retry_interval=60.0)
    mesh = ml.Mesh([], name="orders")
    app = MeshMiddleware(ok, mesh=mesh, routes=[Route("/a", rate=5.0, store=store)])
    app.configure([Route("/b", rate=5.0, store=store)])
    async with AsgiServer(app) as http, httpx.AsyncClient(base_url=http.url) as client:
        assert (await client.get("/b")).status_code == 200
    store.close()
    assert value(render(mesh), 'meshlite_store_fallbacks_total{service="inbound:/b",'
                               'policy="rate_limit",action="local"} ') == 1
