"""The dashboard tells the truth about calls: with a service's breaker open and
every call refused, the service is not "healthy", its calls are counted as failed
(in the REST API and on the page), and attempts and retries are shown apart from
calls. Real uvicorn on loopback; the page in the system Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _chromium import chromium, no_playwright

import meshlite as ml
from meshlite.observability._dashboard._server import DashboardServer


def make_mesh() -> ml.Mesh:
    return ml.Mesh([
        ml.Service("users", ["http://127.0.0.1:80", "http://127.0.0.2:80"],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db"))),
        ml.Service("orders", ["http://127.0.0.3:80"],
                   pipeline=ml.Pipeline(ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0)))),
        ml.Service("search", ["http://127.0.0.4:80"], pipeline=ml.Pipeline()),
    ])


async def ok(backend: Any) -> str:
    return "ok"


async def broken(backend: Any) -> str:
    raise ConnectionError("refused")


async def drive(mesh: ml.Mesh, users: int, orders: int, search: int) -> None:
    for _ in range(users):
        with contextlib.suppress(ml.CircuitOpenError):
            await mesh.call("users", ok)
    for _ in range(orders):
        with contextlib.suppress(ConnectionError):
            await mesh.call("orders", broken)
    for _ in range(search):
        await mesh.call("search", ok)


@pytest.fixture
async def server() -> AsyncIterator[DashboardServer]:
    mesh = make_mesh()
    breaker = next(p for p in mesh.service("users").pipeline.walk()
                   if isinstance(p, ml.CircuitBreaker))
    breaker.force_open()
    srv = await mesh.serve_dashboard(port=0)
    yield srv
    await srv.stop()


async def test_api_counts_refused_and_exhausted_calls_as_failed(
        server: DashboardServer) -> None:
    await server.monitor.stop()  # sample by hand: this test's traffic in one second
    mesh = server.monitor.mesh
    await drive(mesh, users=7, orders=5, search=4)
    server.monitor.tick(time.time() + 1)
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        services = {s["name"]: s for s in (await http.get("/api/services")).json()["services"]}
    users, orders, search = services["users"], services["orders"], services["search"]
    # Every users call was refused by the open breaker: no attempt reached a backend.
    assert users["status"] == "failing"
    assert users["health"]["status"] == "healthy"  # routing itself is fine
    assert {k: users["last_second"][k] for k in
            ("requests", "errors", "error_rate", "attempts", "retries")} == {
        "requests": 7, "errors": 7, "error_rate": 1.0, "attempts": 0, "retries": 0}
    # Each orders call exhausted three attempts: one failed call, two retries.
    assert orders["status"] == "failing"
    assert {k: orders["last_second"][k] for k in
            ("requests", "errors", "attempts", "attempt_errors", "retries")} == {
        "requests": 5, "errors": 5, "attempts": 15, "attempt_errors": 15, "retries": 10}
    assert search["status"] == "healthy"
    assert (search["last_second"]["requests"], search["last_second"]["errors"]) == (4, 0)


def test_call_status_rules() -> None:
    from meshlite.observability._dashboard._history import call_status

    assert call_status("healthy", 10, 0, ["closed"]) == "healthy"
    assert call_status("healthy", 10, 1, []) == "degraded"
    assert call_status("healthy", 10, 5, []) == "failing"
    assert call_status("healthy", 0, 0, ["open"]) == "failing"  # refused before any call
    assert call_status("degraded", 10, 6, []) == "failing"
    assert call_status("down", 10, 10, ["open"]) == "down"


# -- the page -----------------------------------------------------------------------

async def test_page_header_and_cards_follow_calls(server: DashboardServer) -> None:
    try:
        import playwright.async_api  # noqa: F401 - whether the page can be driven
    except ImportError:  # pragma: no cover - depends on the environment
        no_playwright()
    mesh = server.monitor.mesh

    async def traffic() -> None:
        while True:
            await drive(mesh, users=20, orders=0, search=20)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(traffic())
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(server.url + "/")
            deadline = time.monotonic() + 10.0
            while True:
                state = await page.evaluate("""() => ({
                    up: document.getElementById('s-up').textContent,
                    err: document.getElementById('s-err').textContent,
                    users: document.querySelector(
                        'article.card[data-service="users"] .svc-status')?.textContent,
                    ticks: Number(document.body.dataset.ticks || 0)})""")
                if state["ticks"] >= 2 and state["users"] == "failing":
                    break
                assert time.monotonic() < deadline, state
                await asyncio.sleep(0.1)
            # users fails every call, orders has no traffic, search succeeds.
            assert state["up"] == "2 / 3"
            err = float(state["err"].rstrip("%"))
            assert 30.0 <= err <= 70.0, state  # half the calls fail, not 0%
    finally:
        task.cancel()
        await asyncio.wait([task])
