"""What the real page in headless Chromium fetches over REST: on open, no service's
history (cards below the screen draw the feed's seconds; a card's history is fetched
when it comes near the screen, for the range shown, and again for a wider range),
a bounded number of bytes a backend, and ``/api/workers`` once, in its small form,
when this process is the only worker.

The once-a-second loop is stopped: the test pushes each frame, and seeds the
history with ``monitor.tick(second)``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from _chromium import no_playwright
from _dashboard_page import ok, until

import meshlite as ml
from meshlite.observability._dashboard._server import DashboardServer

try:
    from playwright.async_api import Browser, Page, Request
except ImportError:  # pragma: no cover - depends on the environment
    no_playwright()

SERVICES, BACKENDS = 24, 8
LAST = f"service-{SERVICES - 1}"
BYTES_A_BACKEND = 64  # what a page open fetches over REST (page files and feed apart)
ON_SCREEN = """() => [...document.querySelectorAll("article.card")].filter((c) => {
  const r = c.getBoundingClientRect(), margin = innerHeight / 2;  // as app.js observes
  return r.bottom >= -margin && r.top <= innerHeight + margin;
}).map((c) => c.dataset.service)"""


class Fetched:
    """The REST requests a page made, with their sizes on the wire."""

    def __init__(self, page: Page) -> None:
        self.done: list[tuple[str, int]] = []  # (path and query, bytes received)
        self.errors: list[str] = []
        page.on("requestfinished", self._finished)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tasks: set[asyncio.Task[None]] = set()

    def _finished(self, request: Request) -> None:
        async def size() -> None:
            sizes = await request.sizes()
            url = urlsplit(request.url)
            self.done.append((url.path + ("?" + url.query if url.query else ""),
                              sizes["responseHeadersSize"] + sizes["responseBodySize"]))

        if urlsplit(request.url).path.startswith("/api/"):
            task = asyncio.ensure_future(size())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def histories(self) -> list[tuple[str, int]]:
        """(service, seconds) of each history fetched."""
        out = []
        for path, _ in self.done:
            url = urlsplit(path)
            if url.path.endswith("/history"):
                out.append((url.path.split("/")[3], int(parse_qs(url.query)["seconds"][0])))
        return out

    def paths(self, prefix: str) -> list[str]:
        return [p for p, _ in self.done if p.startswith(prefix)]



@pytest.fixture
async def server() -> AsyncIterator[DashboardServer]:
    mesh = ml.Mesh([ml.Service(f"service-{i}", [f"http://127.0.{i}.{j + 1}:80"
                                                for j in range(BACKENDS)])
                    for i in range(SERVICES)])
    srv = await mesh.serve_dashboard(port=0)
    await srv.monitor.stop()  # frames are pushed by hand
    yield srv
    await srv.stop()


async def seed(server: DashboardServer, now: float) -> None:
    """400 seconds of history: the last service takes 40 calls 400 seconds ago, and
    two a second in the last 30 seconds."""
    mesh, monitor = server.monitor.mesh, server.monitor
    for back in range(400, 0, -1):
        calls = 40 if back == 400 else 2 if back <= 30 else 0
        for _ in range(calls):
            await mesh.call(LAST, ok)
        monitor.tick(now - back + 1)  # records the second now - back


async def opened(browser: Browser, server: DashboardServer, now: float,
                 fake_clock: bool = False) -> tuple[Page, Fetched]:
    """A page that got its first whole frame and drew it."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    fetched = Fetched(page)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda data: frames.append(json.loads(data)["type"])))
    if fake_clock:
        await page.clock.install()
    await page.goto(server.url + "/")
    await until("the hello", lambda: asyncio.sleep(0, "hello" in frames))
    await until("a viewer", lambda: asyncio.sleep(0, len(server.monitor.clients) == 1))
    await pushed(page, server, now)
    return page, fetched


async def pushed(page: Page, server: DashboardServer, now: float) -> None:
    """One more frame, and the page has drawn it: whatever the page asked for before
    it has been asked by then."""
    ticks = int(await page.evaluate("() => Number(document.body.dataset.ticks || 0)"))
    await server.monitor.push(server.monitor.tick(now + ticks + 1))
    await until("the frame drawn", lambda: page.evaluate(
        "(n) => Number(document.body.dataset.ticks || 0) > n", ticks))


async def chart_max(page: Page, service: str) -> str:
    found: str = await page.eval_on_selector(
        f'article.card[data-service="{service}"] canvas.chart-rate', "c => c.dataset.max")
    return found


async def test_a_page_fetches_the_history_of_the_cards_it_shows_for_the_range_shown(
        browser: Browser, server: DashboardServer) -> None:
    now = time.time()
    await seed(server, now)
    page, fetched = await opened(browser, server, now)
    await until("every card", lambda: page.evaluate(
        "(n) => document.querySelectorAll('article.card').length === n", SERVICES))
    await pushed(page, server, now)
    on_screen = await page.evaluate(ON_SCREEN)
    assert {s for s, _ in fetched.histories()} == set(on_screen)  # none: the topology is tall
    assert all(seconds == 300 for _, seconds in fetched.histories())
    await until("the sizes", lambda: asyncio.sleep(0, not fetched.tasks))
    rest = sum(size for _, size in fetched.done)
    assert rest <= BYTES_A_BACKEND * SERVICES * BACKENDS, fetched.done

    card = f'article.card[data-service="{LAST}"]'
    await page.locator(card).scroll_into_view_if_needed()
    await until("its history", lambda: asyncio.sleep(0, (LAST, 300) in fetched.histories()))
    await until("its chart drawn from it", lambda: page.eval_on_selector(
        f"{card} canvas.chart-rate", "c => c.dataset.max === '2.5'"))  # 2 a second
    on_screen = await page.evaluate(ON_SCREEN)
    assert LAST in on_screen
    assert {s for s, _ in fetched.histories()} <= set(on_screen)

    await page.click(".range button[data-range='3600']")
    await until("the hour", lambda: asyncio.sleep(0, (LAST, 3600) in fetched.histories()))
    await until("the calls of 400 s ago", lambda: page.eval_on_selector(
        f"{card} canvas.chart-rate", "c => c.dataset.max === '50'"))  # 40 in a second
    await page.click(".range button[data-range='300']")
    await pushed(page, server, now)
    assert await chart_max(page, LAST) == "2.5"
    assert fetched.histories()[-1] == (LAST, 3600)  # nothing fetched for a narrower range
    assert fetched.errors == []


async def test_workers_are_not_polled_when_this_process_is_the_only_worker(
        browser: Browser, server: DashboardServer) -> None:
    now = time.time()
    with contextlib.suppress(Exception):
        await server.monitor.mesh.call("service-0", ok)
    page, fetched = await opened(browser, server, now, fake_clock=True)
    await page.clock.run_for(60_000)  # twelve times the page's 5 s
    await pushed(page, server, now)
    assert fetched.paths("/api/workers") == ["/api/workers?view=totals"]
    assert await page.eval_on_selector("#workers", "w => w.hidden")
    assert fetched.errors == []


async def test_workers_totals_fill_the_workers_table(tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     browser: Browser) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"])])
    server = await mesh.serve_dashboard(port=0)
    try:
        await server.monitor.stop()
        page, fetched = await opened(browser, server, time.time(), fake_clock=True)
        await until("the workers table", lambda: page.evaluate(
            "() => document.querySelectorAll('#worker-rows tr').length === 1"))
        cells = await page.eval_on_selector_all("#worker-rows td",
                                                "tds => tds.map(t => t.textContent)")
        assert cells[:2] == [str(os.getpid()), "running, serves this page"]
        await page.clock.run_for(10_000)  # a shared directory: more workers may come
        # (a poll's request finishes after the timer fired it, and its size is read
        # after that: wait for it, bounded, rather than for the frame alone)
        await until("a second poll of the workers", lambda: asyncio.sleep(
            0, len(fetched.paths("/api/workers?view=totals")) >= 2))
    finally:
        await server.stop()
