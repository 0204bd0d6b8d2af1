"""What the dashboard's REST answers weigh: gzip when the client accepts it (not
for small answers, not for a client that does not, never on the WebSocket), and
``/api/workers?view=totals``, the page's small form of the workers' answer.

A real uvicorn server on a free loopback port; httpx sends ``Accept-Encoding``
as each test says."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _ws import connect

import meshlite as ml
from meshlite.observability._dashboard._gzip import GZIP_MINIMUM_SIZE
from meshlite.observability._dashboard._server import DashboardServer

SERVICES, BACKENDS = 20, 10


async def ok(backend: Any) -> str:
    return "ok"


@pytest.fixture
async def server() -> AsyncIterator[DashboardServer]:
    mesh = ml.Mesh([
        ml.Service(f"service-{i}", [f"http://127.0.{i}.{j + 1}:80" for j in range(BACKENDS)],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name=f"breaker-{i}")))
        for i in range(SERVICES)])
    srv = await mesh.serve_dashboard(port=0)
    await srv.monitor.stop()  # nothing moves between two answers compared
    for _ in range(3):
        await mesh.call("service-0", ok)
    srv.monitor.tick()
    yield srv
    await srv.stop()


async def raw(srv: DashboardServer, path: str, encoding: str) -> httpx.Response:
    """``path`` as the server sent it (not decoded), asked with ``Accept-Encoding``."""
    async with httpx.AsyncClient(base_url=srv.url, trust_env=False) as c:
        request = c.build_request("GET", path, headers={"accept-encoding": encoding})
        response = await c.send(request, stream=True)
        response._content = b"".join([part async for part in response.aiter_raw()])
        return response


@pytest.mark.parametrize("path", ["/api/services/service-5", "/api/health", "/metrics",
                                  "/api/services/service-0/history", "/static/app.js"])
async def test_a_large_answer_is_gzipped_for_a_client_that_accepts_it(
        server: DashboardServer, path: str) -> None:
    plain = await raw(server, path, "identity")
    assert len(plain.content) >= GZIP_MINIMUM_SIZE
    assert "content-encoding" not in plain.headers
    packed = await raw(server, path, "gzip, deflate, br")
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) == len(packed.content) < len(plain.content)
    # the same answer (but /metrics' values of the moment, such as process times)
    assert [line.rpartition(b" ")[0] for line in gzip.decompress(packed.content).splitlines()] \
        == [line.rpartition(b" ")[0] for line in plain.content.splitlines()]
    assert "accept-encoding" in packed.headers["vary"].lower()
    # the guard's headers are still there
    assert packed.headers["content-security-policy"].startswith("default-src 'self'")


@pytest.mark.parametrize("encoding", ["identity", "", "gzip;q=0", "br", "deflate"])
async def test_a_client_that_does_not_accept_gzip_gets_the_answer_as_it_is(
        server: DashboardServer, encoding: str) -> None:
    answer = await raw(server, "/api/services", encoding)
    assert "content-encoding" not in answer.headers
    assert len(json.loads(answer.content)["services"]) == SERVICES


async def test_a_small_answer_is_not_gzipped(server: DashboardServer) -> None:
    for path in ("/api/alerts", "/api/services/nope", "/api/workers?view=totals"):
        answer = await raw(server, path, "gzip")
        assert len(answer.content) < GZIP_MINIMUM_SIZE, path
        assert "content-encoding" not in answer.headers, path


async def test_the_websocket_feed_is_not_touched_by_gzip(server: DashboardServer) -> None:
    url = server.url.replace("http://", "ws://") + "/ws"
    async with connect(url, proxy=None, max_size=None,
                       additional_headers={"Accept-Encoding": "gzip"}) as ws:
        hello = json.loads(await ws.recv())
    assert (hello["type"], sorted(hello["balancers"])) == (
        "hello", sorted(f"service-{i}" for i in range(SERVICES)))


async def test_workers_totals_is_what_the_page_shows_of_the_full_answer(
        server: DashboardServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as c:
        full = (await c.get("/api/workers")).json()
        small = await c.get("/api/workers?view=totals")
        assert (await c.get("/api/workers?view=full")).json() == full
        bad = await c.get("/api/workers?view=everything")
    assert bad.status_code == 400
    assert bad.json() == {"error": "view must be 'full' or 'totals', got 'everything'"}
    (worker,) = full["workers"]
    assert worker["services"]["service-0"]["calls"] == 3
    assert small.json() == {
        "directory": None, "differences": [],
        "workers": [{"pid": worker["pid"], "alive": True, "serving": True, "totals": {
            k: sum(c[k] for c in worker["services"].values())
            for k in ("calls", "failed", "retries", "attempts", "attempt_errors")}}]}
    # the full answer grows with services and backends; the page's form does not
    assert len(small.content) < 200
    assert len(json.dumps(full)) > 40 * SERVICES * BACKENDS
