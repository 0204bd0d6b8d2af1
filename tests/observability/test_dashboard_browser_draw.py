"""What the real page in headless Chromium draws on each frame, at 50 services of 20
backends: the topology is not built again on frames that change only states (its
elements are the same nodes, their states set on them) and shows what a page built
from the same frame shows; it is built again when a backend is added. A card's
charts are not drawn while the card is far from the screen, and once scrolled into
view show what a page that drew them all along shows, pixel for pixel (and its
table of backends what that page's shows).

Frames are pushed by hand (``monitor.push(monitor.tick(now))``, the once-a-second
loop stopped), so the test knows each frame the pages got."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _chromium import no_playwright
from _dashboard_page import WAIT, broken, ok, until

import meshlite as ml
from meshlite.observability._dashboard._server import DashboardServer

try:
    from playwright.async_api import Browser, Page
except ImportError:  # pragma: no cover - depends on the environment
    no_playwright()

SERVICES, BACKENDS = 50, 20
LAST = f"service-{SERVICES - 1}"
CARD = f'article.card[data-service="{LAST}"]'
TICKS = "() => Number(document.body.dataset.ticks || 0)"
MARK = "() => { for (const n of document.querySelector('#topology').children) n.marked = true; }"
MARKED = "() => [...document.querySelector('#topology').children].filter((n) => n.marked).length"
# what the topology shows: each element's name, attributes (in any order) and text
DRAWING = """() => [...document.querySelector('#topology').children].map((n) => [
  n.tagName, [...n.attributes].map((a) => a.name + '=' + a.value).sort().join(' '),
  n.textContent])"""
ROWS = f"""() => [...document.querySelectorAll('{CARD} tbody tr')].map(
  (tr) => [...tr.children].map((td) => td.textContent))"""
CHARTS = f"""() => [...document.querySelectorAll('{CARD} canvas')].map((c) => ({{
  draws: c.meshliteDraws || 0, pixels: c.toDataURL()}}))"""


def address(i: int, j: int) -> str:
    return f"http://127.0.{i}.{j + 1}:80"


def pixels(charts: list[dict[str, Any]]) -> list[str]:
    return [c["pixels"] for c in charts]



@pytest.fixture
async def server() -> AsyncIterator[DashboardServer]:
    mesh = ml.Mesh([ml.Service(f"service-{i}", [address(i, j) for j in range(BACKENDS)])
                    for i in range(SERVICES)])
    srv = await mesh.serve_dashboard(port=0)
    await srv.monitor.stop()  # frames are pushed by hand
    yield srv
    await srv.stop()


class Frames:
    """Pages of one browser on one dashboard, and the frames pushed to them."""

    def __init__(self, browser: Browser, server: DashboardServer) -> None:
        self.browser, self.server = browser, server
        self.now, self.pushed = time.time(), 0
        self.pages: list[Page] = []
        self.errors: list[str] = []

    async def open(self) -> Page:
        page = await self.browser.new_page(viewport={"width": 1280, "height": 900})
        got: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("websocket", lambda ws: ws.on(
            "framereceived", lambda data: got.append(json.loads(data)["type"])))
        await page.goto(self.server.url + "/")
        await until("the hello", lambda: asyncio.sleep(0, "hello" in got))
        self.pages.append(page)
        await until("a viewer each", lambda: asyncio.sleep(
            0, len(self.server.monitor.clients) == len(self.pages)))
        return page

    async def push(self) -> None:
        """One more frame, drawn by every page."""
        ticks = [int(await page.evaluate(TICKS)) for page in self.pages]
        self.pushed += 1
        monitor = self.server.monitor
        await monitor.push(monitor.tick(self.now + self.pushed))
        for page, before in zip(self.pages, ticks, strict=True):
            await until("the frame drawn", lambda p=page, n=before: p.evaluate(
                f"(n) => ({TICKS})() > n", n))


async def test_frames_that_change_only_states_keep_the_topology_elements(
        browser: Browser, server: DashboardServer) -> None:
    mesh, frames = server.monitor.mesh, Frames(browser, server)
    page = await frames.open()
    await frames.push()  # the whole tick
    await page.evaluate(MARK)
    elements = await page.evaluate("() => document.querySelector('#topology').children.length")
    assert elements > SERVICES * BACKENDS * 4  # an edge, a box, a dot and two texts each
    for i in range(5):  # calls, failures, ejections: states and figures only
        for _ in range(3):
            await mesh.call(f"service-{i}", ok)
            with contextlib.suppress(ConnectionError):
                await mesh.call(f"service-{i + 10}", broken)
        mesh.service(f"service-{i}").eject(address(i, 0), 600.0)
        await frames.push()
    assert await page.evaluate(MARKED) == elements  # not one element built again
    drawing = await page.evaluate(DRAWING)
    assert sum("ejected" in text for _, _, text in drawing) == 5

    fresh = await frames.open()  # built from its hello, the mesh as it is now
    await frames.push()
    assert await page.evaluate(DRAWING) == await fresh.evaluate(DRAWING)
    assert await page.evaluate(MARKED) == elements

    mesh.service(LAST).set_backends([address(SERVICES - 1, j) for j in range(BACKENDS + 1)])
    await frames.push()  # a backend added: built again
    assert await page.evaluate(MARKED) == 0
    assert await page.evaluate(DRAWING) == await fresh.evaluate(DRAWING)
    assert frames.errors == []


async def test_charts_far_from_the_screen_are_drawn_when_they_come_into_view(
        browser: Browser, server: DashboardServer) -> None:
    mesh, frames = server.monitor.mesh, Frames(browser, server)
    page = await frames.open()  # at the top: the last card is far below
    along = await frames.open()
    await frames.push()  # the whole tick
    await along.locator(CARD).scroll_into_view_if_needed()
    await until("drawn all along", lambda: along.evaluate(
        f"() => ({CHARTS})().every((c) => c.draws > 0)"))
    for calls in (2, 5, 1, 4):
        for _ in range(calls):
            await mesh.call(LAST, ok)
        await frames.push()
    mesh.service(LAST).eject(address(SERVICES - 1, 3), 600.0)
    await frames.push()
    assert [c["draws"] for c in await page.evaluate(CHARTS)] == [0, 0]

    await page.locator(CARD).scroll_into_view_if_needed()
    deadline = time.monotonic() + WAIT  # its history comes after it is drawn first
    while pixels(shown := await page.evaluate(CHARTS)) != pixels(
            await along.evaluate(CHARTS)) or not all(c["draws"] for c in shown):
        assert time.monotonic() < deadline, "the charts scrolled into view differ"
        await asyncio.sleep(0.05)
    rows = await page.evaluate(ROWS)  # its backends' table, filled when it came near
    assert rows == await along.evaluate(ROWS)
    assert rows[3][1].startswith("ejected ")
    assert frames.errors == []
