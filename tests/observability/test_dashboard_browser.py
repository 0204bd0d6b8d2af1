"""The dashboard page in a real headless Chromium (Debian ``chromium``), driven by
Playwright: it shows the services, its charts move with live traffic, the token
given in the URL fragment works, and nothing breaks the page's CSP. Takes a
screenshot into a temporary directory; ``make screenshot`` runs the same test with
``MESHLITE_SCREENSHOT=docs/img/dashboard.png`` to regenerate the README's picture
(a test run never modifies a tracked file).

Playwright's own browser download is never used: Chromium is the system one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from _chromium import no_playwright

import meshlite as ml
from meshlite.observability._dashboard import AlertRule
from meshlite.observability._dashboard._server import DashboardServer

try:
    from playwright.async_api import Browser, Page
except ImportError:  # pragma: no cover - depends on the environment
    no_playwright()

README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
TOKEN = "browser-test-token-0123456789abcdef"


class DemoClock:
    """Real time, shifted into the past while history is seeded; each call's latency
    is added while it runs, so the mesh measures the latencies the demo chooses."""

    def __init__(self) -> None:
        self.shift = 0.0
        self.extra = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.shift + self.extra

    def sleep(self, seconds: float) -> None:
        pass

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class Demo:
    """A small shop: per-backend latency and error rate, with an incident script
    (orders' database is slow for a while; the payment provider starts failing)."""

    # address -> (median latency in seconds, error rate)
    BACKENDS: ClassVar[dict[str, tuple[float, float]]] = {
        "http://users-1:8080": (0.011, 0.002), "http://users-2:8080": (0.014, 0.004),
        "http://orders-1:8080": (0.024, 0.005), "http://orders-2:8080": (0.027, 0.005),
        "http://orders-3:8080": (0.060, 1.0),
        "http://payments-1:9000": (0.045, 0.01), "http://payments-2:9000": (0.05, 0.01),
    }
    RATES: ClassVar[dict[str, int]] = {"users": 30, "orders": 15, "payments": 8}  # calls per second
    SLOW_ORDERS = range(100, 150)  # seconds after the start of the history
    PAYMENTS_FAIL = 270

    def __init__(self) -> None:
        self.clock = DemoClock()
        self.rng = random.Random(7)
        self.index = 0  # seconds since the start of the history
        self.breaker = ml.CircuitBreaker(name="psp", failure_rate=0.5, window=40, min_calls=10,
                                         open_seconds=600.0, clock=self.clock)
        od = ml.OutlierDetection(consecutive_failures=3, base_ejection_seconds=120.0)
        self.mesh = ml.Mesh([
            ml.Service("users", [a for a in self.BACKENDS if "users" in a],
                       pipeline=ml.Pipeline(ml.Retry(attempts=2, clock=self.clock)),
                       outlier_detection=od),
            ml.Service("orders", [a for a in self.BACKENDS if "orders" in a],
                       balancer="round_robin", outlier_detection=od,
                       pipeline=ml.Pipeline(ml.CircuitBreaker(name="orders-db",
                                                              clock=self.clock))),
            ml.Service("payments", [a for a in self.BACKENDS if "payments" in a],
                       balancer="least_requests", pipeline=ml.Pipeline(self.breaker),
                       outlier_detection=None),
        ], clock=self.clock)
        self.mesh.alerts.replace([
            AlertRule("high-error-rate", "error_rate", threshold=0.05, for_seconds=5,
                      min_requests=20, severity="critical"),
            AlertRule("slow-p99", "p99", threshold=0.25, for_seconds=10, service="orders"),
            AlertRule("breaker-open", "breaker_open", severity="critical"),
        ])

    def behaviour(self, address: str) -> tuple[float, float]:
        median, errors = self.BACKENDS[address]
        if "orders" in address and self.index in self.SLOW_ORDERS:
            median *= 6
        if "payments" in address and self.index >= self.PAYMENTS_FAIL:
            errors = 0.7
        return median, errors

    def call(self, backend: ml.Backend) -> str:
        median, errors = self.behaviour(backend.address)
        self.clock.extra = median * self.rng.lognormvariate(0.0, 0.45)
        if self.rng.random() < errors:
            raise ConnectionError("backend refused")
        return "ok"

    def calls(self, service: str, seconds: float = 1.0) -> int:
        wave = 1.0 + 0.25 * math.sin(self.index / 40.0)
        return round(self.RATES[service] * seconds * wave * self.rng.uniform(0.85, 1.15))

    def one(self, service: str) -> None:
        with contextlib.suppress(ConnectionError, ml.MeshliteError):
            self.mesh.call_sync(service, self.call)
        self.clock.extra = 0.0

    def seed(self, server: DashboardServer, seconds: int = 300) -> None:
        """Fill the dashboard's history: traffic second by second, each sampled as the
        dashboard does, until the simulated time has caught up with the real time."""
        stamp = time.time() - seconds
        while stamp < time.time():
            self.clock.shift = stamp - time.time()
            for service in self.RATES:
                for _ in range(self.calls(service)):
                    self.one(service)
            server.monitor.tick(stamp + 1)  # records the second that began at `stamp`
            stamp += 1
            self.index += 1
        self.clock.shift = 0.0

    async def live(self) -> None:
        """Keep the traffic going in real time until cancelled."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for service in self.RATES:
                # a stalled loop drops traffic rather than bursting to catch up
                for _ in range(self.calls(service, min(now - last, 0.2))):
                    self.one(service)
            last = now



@pytest.fixture
async def demo(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Demo, DashboardServer]]:
    d = Demo()
    server = await d.mesh.serve_dashboard(port=0, token=TOKEN)
    if getattr(request, "param", "") == "seeded":
        await server.monitor.stop()  # no live sample in the middle of the seeded ones
        d.seed(server)
        server.monitor.start()
    traffic = asyncio.create_task(d.live())
    yield d, server
    traffic.cancel()
    await asyncio.wait([traffic])
    await server.stop()


def watch_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def wait_until(page: Page, predicate: str, arg: Any, seconds: float) -> None:
    """Poll ``predicate(arg)`` in the page until it is true (``seconds`` is a bound for
    a loaded machine's browser, not an expectation).

    ``page.wait_for_function`` would evaluate a string with ``eval`` in the page,
    which the dashboard's Content-Security-Policy (rightly) forbids.
    """
    deadline = time.monotonic() + seconds
    while not await page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"not true within {seconds} s: {predicate}"
        await asyncio.sleep(0.05)


async def canvas_image(page: Page, selector: str) -> str:
    image: str = await page.eval_on_selector(selector, "c => c.toDataURL()")
    return image


@pytest.mark.parametrize("demo", ["seeded"], indirect=True)
async def test_page_shows_services_and_live_charts(
        browser: Browser, demo: tuple[Demo, DashboardServer], tmp_path: Path) -> None:
    _, server = demo
    wanted = os.environ.get("MESHLITE_SCREENSHOT")  # set by `make screenshot` only
    screenshot = Path(wanted) if wanted else tmp_path / "dashboard.png"
    tracked = README_SCREENSHOT.read_bytes() if README_SCREENSHOT.exists() else None
    page = await browser.new_page(viewport={"width": 1440, "height": 900},
                                  device_scale_factor=1)
    errors = watch_errors(page)
    await page.goto(f"{server.url}/#token={TOKEN}")
    for name in ("users", "orders", "payments"):
        await page.wait_for_selector(f'article.card[data-service="{name}"]', timeout=30_000)
    assert "#token" not in page.url  # taken out of the address bar
    await wait_until(page, "() => Number(document.body.dataset.ticks || 0) >= 1", None, 30.0)
    assert await page.text_content("#topology") is not None
    assert "orders-3" in (await page.text_content("#topology") or "")
    chart = 'article.card[data-service="users"] canvas.chart-rate'
    before = await canvas_image(page, chart)
    await wait_until(page, "([sel, prev]) => document.querySelector(sel).toDataURL() !== prev",
                     [chart, before], 30.0)
    assert "payments" in (await page.text_content("#alert-list") or "")
    breakers = await page.text_content('article.card[data-service="payments"] .breakers')
    assert breakers is not None
    assert "open" in breakers
    await page.wait_for_timeout(300)  # let the last frame settle before the picture
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    if not wanted:  # the README's picture is left as it is
        assert (README_SCREENSHOT.read_bytes() if README_SCREENSHOT.exists() else None) \
            == tracked
    assert errors == []


async def test_page_asks_for_token_when_missing(
        browser: Browser, demo: tuple[Demo, DashboardServer]) -> None:
    _, server = demo
    page = await browser.new_page()
    errors = watch_errors(page)
    await page.goto(server.url)
    await page.wait_for_selector("#login:not([hidden])", timeout=30_000)
    await page.fill("#login-token", TOKEN)
    await page.click("#login-form button")
    await page.wait_for_selector('article.card[data-service="users"]', timeout=30_000)
    await page.wait_for_selector("#conn.live", timeout=30_000)  # the WebSocket took the token
    # the one 401 before the token was typed is the browser's only complaint
    assert all("401" in e for e in errors)
