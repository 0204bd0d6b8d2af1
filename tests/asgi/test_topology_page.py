"""The dashboard page, in a real headless Chromium, draws the callers a service's
inbound middleware learned beside the services its mesh calls."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import httpx
import pytest
from _system import require_program

import meshlite as ml
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer, FakeBackend

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("playwright is not installed (pip install playwright); CI=true, so this "
                    "is a failure", pytrace=False)
    pytest.skip("playwright is not installed (pip install playwright)", allow_module_level=True)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]


async def test_page_draws_caller_and_callee_nodes() -> None:
    chromium = require_program("chromium", "chromium")

    async def app(scope: object, receive: object, send: object) -> None:
        r = await orders.http("inventory").get("/stock")
        await send({"type": "http.response.start",  # type: ignore[operator]
                    "status": r.status_code, "headers": []})
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async with FakeBackend() as inventory:
        orders = ml.Mesh([ml.Service("inventory", [inventory.url])], name="orders")
        async with orders, AsgiServer(MeshMiddleware(app, mesh=orders)) as server:
            async with httpx.AsyncClient() as client:
                for _ in range(3):
                    await client.get(server.url + "/", headers={"x-meshlite-caller": "gateway"})
            dashboard = await orders.serve_dashboard(port=0)
            try:
                async with async_playwright() as p:
                    browser = await p.chromium.launch(executable_path=chromium,
                                                      args=CHROMIUM_ARGS)
                    try:
                        page = await browser.new_page()
                        await page.goto(dashboard.url + "/")
                        # A selector, not wait_for_function: the page's CSP forbids
                        # the eval that polling a JS predicate needs.
                        await page.wait_for_selector("#topology .node.caller",
                                                     timeout=20_000)
                        # The callers (/api/topology) and the services (the feed's
                        # first frame) come apart: either may be drawn first.
                        await page.wait_for_selector(
                            "#topology text:has-text('inventory')", timeout=20_000)
                        drawn = await page.text_content("#topology") or ""
                        await page.wait_for_selector("#inbound-panel:not([hidden])")
                        table = await page.text_content("#inbound") or ""
                    finally:
                        await browser.close()
            finally:
                await dashboard.stop()
    assert "gateway" in drawn  # the caller, learned from x-meshlite-caller
    assert "orders" in drawn  # this service, named by its mesh
    assert "inventory" in drawn  # what it calls
    assert "200: 3" in table  # the inbound panel: the answers per route


async def _refusal_lines(page: Any, action: str, total: int) -> list[str]:
    """The page's refusal lines of ``action`` once their counts add up to ``total``
    (at most 20 s). Refusals are aggregated per second: a burst that straddles a
    second's boundary is two lines, and the page may show a second's line before its
    last refusals are counted."""
    deadline = time.monotonic() + 20.0
    while True:
        lines = [t for t in await page.locator("#refusals li").all_text_contents()
                 if action in t]
        if sum(int(m) for line in lines for m in re.findall(r" x(\d+) ", line)) >= total:
            return lines
        assert time.monotonic() < deadline, f"{action}: {lines}"
        await asyncio.sleep(0.05)


async def test_refusals_reach_the_page_aggregated_never_one_line_per_request() -> None:
    chromium = require_program("chromium", "chromium")
    from meshlite.asgi import Auth, Route

    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start",  # type: ignore[operator]
                    "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    orders = ml.Mesh([], name="orders")
    guarded = MeshMiddleware(app, mesh=orders, auth=Auth(api_keys={"k-a": ("alice", [])}),
                             routes=[Route("/admin", auth=True),
                                     Route("/*", rate=1.0, per=60.0, burst=1, key="ip")])
    async with orders, AsgiServer(guarded) as server, httpx.AsyncClient() as client:
        attack = [(await client.get(server.url + "/")).status_code for _ in range(30)]
        dashboard = await orders.serve_dashboard(port=0)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium,
                                                  args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page()
                    await page.goto(dashboard.url + "/")
                    quota = await _refusal_lines(page, "quota_exhausted", 29)
                    # Then live, over the WebSocket: failed credentials.
                    for _ in range(5):
                        await client.get(server.url + "/admin", headers={"x-api-key": "bad"})
                    auth = await _refusal_lines(page, "auth_failed", 5)
                    items = await page.locator("#refusals li").all_text_contents()
                finally:
                    await browser.close()
        finally:
            await dashboard.stop()
    assert attack.count(429) == 29
    # 29 refusals: one line a second (two when the burst straddled a second's boundary)
    assert 1 <= len(quota) <= 2
    assert all("/* 429 x" in t and "client(s): ip:127.0.0.1" in t for t in quota)
    assert 1 <= len(auth) <= 2
    assert all("/admin 401 x" in t for t in auth)
    assert len(items) == len(quota) + len(auth)


async def test_a_page_left_open_under_attack_remembers_a_bounded_number_of_refusals(
        ) -> None:
    # Refusals on paths no route names are one entry per path and second: an attacker
    # sends a fresh path each time, and the page must not keep every entry's key.
    chromium = require_program("chromium", "chromium")
    from meshlite.asgi import Auth

    orders = ml.Mesh([], name="orders")
    guarded = MeshMiddleware(echo_ok, mesh=orders,
                             auth=Auth(api_keys={"k" * 20: ("alice", [])}))
    async with orders, AsgiServer(guarded) as server, httpx.AsyncClient() as client:
        dashboard = await orders.serve_dashboard(port=0)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium,
                                                  args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page()
                    await page.goto(dashboard.url + "/")
                    await page.wait_for_selector("#conn.live", timeout=20_000)
                    sent = 0
                    for second in range(5):  # 64 entries a second: the feed's most
                        for i in range(64):
                            r = await client.get(f"{server.url}/p{second}-{i}",
                                                 headers={"x-api-key": "bad"})
                            assert r.status_code == 401
                            sent += 1
                        await asyncio.sleep(1.05)
                    last = "/p4-63 401"
                    await page.wait_for_selector(f"#refusals li:has-text('{last}')",
                                                 timeout=20_000)
                    remembered = await page.get_attribute("#refusals", "data-remembered")
                    shown = await page.locator("#refusals li").count()
                finally:
                    await browser.close()
        finally:
            await dashboard.stop()
    assert sent == 320
    assert remembered is not None
    assert int(remembered) <= 200  # not one key per entry ever shown
    assert shown == 50


async def echo_ok(scope: object, receive: object, send: object) -> None:
    """Answers 200 with no body."""
    await send({"type": "http.response.start",  # type: ignore[operator]
                "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]
