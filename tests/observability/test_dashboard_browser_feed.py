"""The real page in headless Chromium applies the feed's delta frames: after a whole
``tick`` and several deltas (calls, a backend added, a config reload that removes
a service and a backend and adds a service), every card shows what the server's
whole view of the mesh says; after its WebSocket is dropped, the page reconnects,
gets a whole frame first and shows the mesh as it is then.

Frames are pushed by hand (``monitor.push(monitor.tick(now))``, the once-a-second
loop stopped), so the test knows each frame the page got."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from _chromium import chromium, no_playwright
from _dashboard_page import WAIT, broken, ok, until

import meshlite as ml
from meshlite.observability._dashboard._server import DashboardServer

try:
    import playwright.async_api  # noqa: F401 - whether the page can be driven
except ImportError:  # pragma: no cover - depends on the environment
    no_playwright()

CONFIG = """
services:
  users: {backends: ["http://127.0.0.1:80", "http://127.0.0.2:80"]}
  orders: {backends: ["http://127.0.0.3:80"]}
  search: {backends: ["http://127.0.0.4:80"]}
"""
RELOADED = """
services:
  users: {backends: ["http://127.0.0.1:80", "http://127.0.0.2:80"]}
  orders: {backends: ["http://127.0.0.5:80"]}
  billing: {backends: ["http://127.0.0.6:80", "http://127.0.0.7:80"], balancer: round_robin}
"""
CARDS = """() => Object.fromEntries([...document.querySelectorAll("article.card")].map((c) => [
  c.dataset.service, {
    status: c.querySelector(".svc-status").textContent,
    rps: c.querySelector(".f-rps").textContent,
    inflight: c.querySelector(".f-inflight").textContent,
    rows: [...c.querySelectorAll("tbody tr")].map(
      (tr) => [...tr.children].slice(0, 5).map((td) => td.textContent))}]))"""


def fmt_rate(value: float) -> str:
    return f"{value:.0f}/s" if value >= 100 else f"{value:.1f}/s"


def shown(frame: dict[str, Any]) -> dict[str, Any]:
    """What the cards must show for ``frame``, the server's whole view."""
    return {name: {"status": s["status"], "rps": fmt_rate(s["requests"]),
                   "inflight": str(s["in_flight"]),
                   "rows": [[r[0], r[1], str(r[2]), str(r[4]), str(r[5])]
                            for r in s["backends"]]}
            for name, s in frame["services"].items()}


async def test_page_shows_the_mesh_after_delta_frames_and_a_reconnect(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG)
    mesh = ml.Mesh.from_config(str(path))
    server: DashboardServer = await mesh.serve_dashboard(port=0)
    monitor = server.monitor
    await monitor.stop()  # frames are pushed by hand
    frames: list[str] = []
    now = time.time()
    pushed: list[dict[str, Any]] = []

    async def push() -> None:
        pushed.append(monitor.tick(now + len(pushed) + 1))
        await monitor.push(pushed[-1])

    async def viewers(n: int) -> None:
        await until(f"{n} viewer(s)", lambda: asyncio.sleep(0, len(monitor.clients) == n))

    try:
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda data: frames.append(json.loads(data)["type"])))

            async def page_shows(frame: dict[str, Any]) -> None:
                deadline, wanted = time.monotonic() + WAIT, shown(frame)
                while (cards := await page.evaluate(CARDS)) != wanted:
                    assert time.monotonic() < deadline, (cards, wanted)
                    await asyncio.sleep(0.05)

            await page.goto(server.url + "/")
            await until("the hello", lambda: asyncio.sleep(0, frames == ["hello"]))
            await viewers(1)
            for _ in range(7):
                await mesh.call("users", ok)
            await push()  # whole
            await page_shows(pushed[-1])

            for _ in range(4):
                await mesh.call("orders", ok)
            await push()  # users' calls stop, orders' start
            await page_shows(pushed[-1])

            mesh.service("orders").set_backends(["http://127.0.0.3:80", "http://127.0.0.5:80"])
            for _ in range(3):
                with contextlib.suppress(ConnectionError):
                    await mesh.call("users", broken)
            await push()  # a backend added; users' calls fail
            await page_shows(pushed[-1])

            path.write_text(RELOADED)
            assert await mesh.reload()
            for _ in range(5):
                await mesh.call("billing", ok)
            await push()  # search and orders' 127.0.0.3 removed, billing added
            await page_shows(pushed[-1])
            assert set(await page.evaluate(CARDS)) == {"users", "orders", "billing"}
            balancer = 'article.card[data-service="billing"] .balancer'
            await until("billing's balancer, from the REST API", lambda: page.eval_on_selector(
                balancer, "b => b.textContent === 'round_robin'"))
            await push()  # nothing moved but the calls stopping
            await page_shows(pushed[-1])
            assert frames == ["hello", "tick", "delta", "delta", "delta", "delta"]

            # Dropped: the page reconnects; meanwhile search comes back, billing goes.
            (socket,) = monitor.clients
            await socket.close(1012)
            await viewers(0)
            path.write_text(CONFIG)
            assert await mesh.reload()
            await until("the new hello", lambda: asyncio.sleep(0, frames[-1] == "hello"))
            await viewers(1)
            await push()
            await page_shows(pushed[-1])
            assert frames[-3:] == ["delta", "hello", "delta"]  # the hello held the mesh
            assert set(await page.evaluate(CARDS)) == {"users", "orders", "search"}
            assert errors == []
    finally:
        await server.stop()
