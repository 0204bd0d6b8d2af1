"""The real page in headless Chromium starts from the feed's ``hello``: a page opened
late, which gets the mesh from its hello alone, shows what a page open all along
(a tick, then deltas) shows, cards, charts, summary, alerts and topology alike; a
feed version the page does not read makes it load itself once, then say so and
stop; after the dashboard restarts, the page connects again and shows the mesh.

The once-a-second loop is stopped: each frame is pushed by the test, which knows
what each page got."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from _chromium import no_playwright
from _dashboard_page import WAIT, broken, ok, until

import meshlite as ml
from meshlite.observability._dashboard import _frames
from meshlite.observability._dashboard._monitor import Monitor
from meshlite.observability._dashboard._server import DashboardServer

try:
    from playwright.async_api import Browser, Page
except ImportError:  # pragma: no cover - depends on the environment
    no_playwright()

CONFIG = """
services:
  users: {backends: ["http://127.0.0.1:80", "http://127.0.0.2:80"], balancer: round_robin}
  orders: {backends: ["http://127.0.0.3:80"], balancer: least_requests}
"""
SHOWN = """() => {
  const text = (sel) => document.querySelector(sel).textContent;
  const cards = Object.fromEntries([...document.querySelectorAll("article.card")].map((c) => [
    c.dataset.service, {
      fields: [".svc-status", ".balancer", ".breakers", ".f-rps", ".f-err", ".f-p50",
               ".f-p99", ".f-inflight", ".f-attempts", ".f-retries"].map(
                 (s) => c.querySelector(s).textContent),
      rows: [...c.querySelectorAll("tbody tr")].map(
        (tr) => [...tr.children].map((td) => td.textContent)),
      charts: [...c.querySelectorAll("canvas")].map((canvas) => canvas.toDataURL())}]));
  return {cards, topology: text("#topology"), alerts: text("#alert-list"),
          summary: ["#overall", "#s-rps", "#s-err", "#s-p99", "#s-up", "#s-backends",
                    "#s-alerts"].map(text)};
}"""


class Pages:
    """Pages of one browser on one dashboard, the frame types each got."""

    def __init__(self, browser: Browser, server: DashboardServer) -> None:
        self.browser, self.server = browser, server
        self.errors: list[str] = []
        self.frames: dict[Page, list[str]] = {}

    async def open(self) -> Page:
        page = await self.browser.new_page(viewport={"width": 1280, "height": 900})
        frames = self.frames[page] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("websocket", lambda ws: ws.on(
            "framereceived", lambda data: frames.append(json.loads(data)["type"])))
        await page.goto(self.server.url + "/")
        await until("the hello", lambda: asyncio.sleep(0, "hello" in frames))
        return page


def differences(shown: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """Where the late page differs from the early one (a chart as "differs")."""
    out: dict[str, Any] = {k: (shown[k], wanted[k]) for k in ("topology", "alerts", "summary")
                           if shown[k] != wanted[k]}
    for name in set(shown["cards"]) | set(wanted["cards"]):
        mine, theirs = shown["cards"].get(name, {}), wanted["cards"].get(name, {})
        for part in ("fields", "rows", "charts"):
            if mine.get(part) != theirs.get(part):
                out[f"{name} {part}"] = "differs" if part == "charts" else (
                    mine.get(part), theirs.get(part))
    return out


async def viewers(monitor: Monitor, n: int) -> None:
    await until(f"{n} viewer(s)", lambda: asyncio.sleep(0, len(monitor.clients) == n))



async def test_a_page_shows_from_its_hello_what_a_page_open_all_along_shows(
        browser: Browser) -> None:
    breaker = ml.CircuitBreaker(name="users-db")
    mesh = ml.Mesh([
        ml.Service("users", ["http://127.0.0.1:80", "http://127.0.0.2:80"],
                   balancer="round_robin", pipeline=ml.Pipeline(breaker)),
        ml.Service("orders", ["http://127.0.0.3:80"], balancer="least_requests")])
    mesh.alerts.add(ml.AlertRule("users-breaker", "breaker_open", service="users"))
    server = await mesh.serve_dashboard(port=0)
    monitor, now, second = server.monitor, time.time(), [0]
    await monitor.stop()  # frames are pushed by hand

    async def push() -> None:
        second[0] += 1
        await monitor.push(monitor.tick(now + second[0]))

    try:
        pages = Pages(browser, server)
        early = await pages.open()
        await viewers(monitor, 1)
        for _ in range(6):
            await mesh.call("users", ok)
        await push()  # the early page's whole tick
        for _ in range(3):
            with contextlib.suppress(ConnectionError):
                await mesh.call("orders", broken)
        mesh.service("users").eject("http://127.0.0.2:80", 600.0)
        await push()
        breaker.force_open()
        await mesh.call("orders", ok)
        await push()  # an alert fires
        late = await pages.open()  # the whole mesh in its hello, nothing after it
        await viewers(monitor, 2)
        assert (pages.frames[early], pages.frames[late]) == (
            ["hello", "tick", "delta", "delta"], ["hello"])

        wanted = await early.evaluate(SHOWN)
        assert set(wanted["cards"]) == {"users", "orders"}
        assert wanted["cards"]["users"]["fields"][:3] == [
            "failing", "round_robin", "breaker forced open"]
        assert [row[1][:8] for row in wanted["cards"]["users"]["rows"]] == ["up", "ejected "]
        assert "users" in wanted["alerts"]
        deadline = time.monotonic() + WAIT  # its histories load after the hello
        while (shown := await late.evaluate(SHOWN)) != wanted:
            assert time.monotonic() < deadline, differences(shown, wanted)
            await asyncio.sleep(0.05)
        assert pages.errors == []
    finally:
        await server.stop()


async def test_a_feed_version_the_page_does_not_read_reloads_it_once_then_stops(
        browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_frames, "FEED_VERSION", 99)  # a server newer than the page
    server = await ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"])]).serve_dashboard(
        port=0)
    try:
        page = await browser.new_page()
        loads: list[str] = []
        sockets: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(server.url + "/")
        await page.wait_for_selector("#conn.down", timeout=WAIT * 1000)
        assert await page.text_content("#conn") == (
            "feed version 99 unsupported (this page reads 3)")
        assert (len(loads), len(sockets)) == (2, 2)  # loaded again once, for the server's own
        await viewers(server.monitor, 0)
        assert await page.query_selector("article.card") is None  # nothing half-read shown

        monkeypatch.setattr(_frames, "FEED_VERSION", 3)  # the page and the server agree again
        await page.reload()
        await page.wait_for_selector('article.card[data-service="users"]', timeout=WAIT * 1000)
        await page.wait_for_selector("#conn.live", timeout=WAIT * 1000)
    finally:
        await server.stop()


async def test_the_page_connects_again_after_the_dashboard_restarts(
        browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG)
    mesh = ml.Mesh.from_config(str(path))
    server = await mesh.serve_dashboard(port=0)
    await server.monitor.stop()
    port, now = server.port, time.time()
    try:
        pages = Pages(browser, server)
        page = await pages.open()
        await viewers(server.monitor, 1)
        await server.monitor.push(server.monitor.tick(now + 1))
        await page.wait_for_selector('article.card[data-service="orders"]', timeout=WAIT * 1000)
        await server.stop()
        await page.wait_for_selector("#conn.down", timeout=WAIT * 1000)

        path.write_text(CONFIG.replace("orders", "billing"))
        assert await mesh.reload()
        server = await mesh.serve_dashboard(port=port)  # a new feed: no frame yet
        await server.monitor.stop()
        for _ in range(4):
            await mesh.call("billing", ok)
        await until("the new hello", lambda: asyncio.sleep(0, pages.frames[page].count(
            "hello") == 2))
        await viewers(server.monitor, 1)
        await server.monitor.push(server.monitor.tick(now + 2))
        billing = 'article.card[data-service="billing"]'
        await page.wait_for_selector(f"{billing} .f-rps:text('4.0/s')", timeout=WAIT * 1000)
        assert await page.text_content(f"{billing} .balancer") == "least_requests"
        assert await page.query_selector('article.card[data-service="orders"]') is None
        assert pages.frames[page][-3:] == ["tick", "hello", "tick"]
        assert await page.text_content("#conn") == "live"
        assert pages.errors == []
    finally:
        await server.stop()
