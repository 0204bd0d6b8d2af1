"""What the dashboard page downloads at scale, counted in a real headless Chromium.

The dashboard of benchmarks/dashboard_feed.py's mesh (300 services of 50 backends,
three services taking five calls a second) runs in a child process; the system
Chromium opens the page (1280 x 900) and its DevTools protocol counts every HTTP
answer as it came over the wire (``encodedDataLength``: headers and body, compressed
when it was) and every WebSocket frame's payload (as the page reads it, before
permessage-deflate). Printed, by what was fetched:

- on open: until the feed's hello came and nothing was requested for 3 seconds;
- the minute after, the page left open, and how it kept up: the frames it applied
  (its ``body[data-ticks]``) against the frames received and the seconds elapsed, and
  its main thread's busy time per frame applied (the DevTools protocol's
  ``Performance.getMetrics``: TaskDuration, of which ScriptDuration, LayoutDuration
  and RecalcStyleDuration);
- the dashboard process's CPU per page open (its ``time.process_time()``, so not
  Chromium's): with its once-a-second loop and the traffic stopped, a new page
  opened until quiet, three times (least and median).

    .venv/bin/python benchmarks/dashboard_page.py            # 300 x 50, about 2 minutes
    .venv/bin/python benchmarks/dashboard_page.py --quick    # 30 x 50, 10 s after open
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from collections import Counter
from typing import Any

QUIET = 3.0  # seconds without a request: the page has finished opening
LONGEST = 180.0  # seconds an open may take at most (then said so)
PERIODIC = ("topology", "workers", "feed")  # asked for all along (workers: by the page before)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def kind(url: str) -> str:
    """What a request fetched, from its URL."""
    path = url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
    if url.startswith("ws"):
        return "feed"
    if path == "" or path.startswith("static/"):
        return "page"
    if path.endswith("/history"):
        return "history"
    if path in ("api/topology", "api/inbound"):
        return "topology"
    if path == "api/workers":
        return "workers"
    return "other"


async def serve(services: int, backends: int) -> None:
    """The child: the dashboard and its traffic, driven by lines on stdin."""
    from dashboard_feed import make_mesh, traffic

    mesh = make_mesh(services, backends)
    server = await mesh.serve_dashboard(port=0, max_clients=8)
    load = asyncio.create_task(traffic(mesh))
    print(server.url, flush=True)
    while (line := (await asyncio.to_thread(sys.stdin.readline)).strip()) not in ("", "quit"):
        if line == "pause":  # nothing runs but what a page asks for
            load.cancel()
            await server.monitor.stop()
        print(f"{time.process_time():.6f}", flush=True)
    await server.stop()


class Counting:
    """Bytes a page received, by kind, from its DevTools protocol events."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.bytes: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.last = time.monotonic()
        self.hello = False
        self.opening: set[str] = set()  # requests in flight, of what an open fetches
        self.cdp: Any = None  # the page's DevTools protocol session

    def started(self, event: dict[str, Any]) -> None:
        url = self.urls[event["requestId"]] = event["request"]["url"]
        if kind(url) not in PERIODIC:
            self.opening.add(event["requestId"])
            self.last = time.monotonic()

    def finished(self, event: dict[str, Any]) -> None:
        url = self.urls.get(event["requestId"], "")
        self.bytes[kind(url)] += int(event.get("encodedDataLength", 0))
        self.requests[kind(url)] += 1
        if event["requestId"] in self.opening:
            self.opening.discard(event["requestId"])
            self.last = time.monotonic()

    def failed(self, event: dict[str, Any]) -> None:
        self.opening.discard(event["requestId"])

    def frame(self, event: dict[str, Any]) -> None:
        self.bytes["feed"] += len(event["response"]["payloadData"].encode())
        self.requests["feed"] += 1
        self.hello = True

    def take(self) -> tuple[Counter[str], Counter[str]]:
        out = self.bytes, self.requests
        self.bytes, self.requests = Counter(), Counter()
        return out

    async def quiet(self) -> float:
        """Waits until the page has opened: the hello came, and nothing but the
        periodic topology was asked for in :data:`QUIET` seconds. Returns the
        seconds it took."""
        start = time.monotonic()
        # polled: "quiet" is a span of time with nothing in it, not an event
        while not self.hello or self.opening or time.monotonic() - self.last < QUIET:
            if time.monotonic() - start > LONGEST:
                print(f"  (still opening after {LONGEST:.0f} s: counted so far)")
                break
            await asyncio.sleep(0.1)
        return time.monotonic() - start


async def counted_page(browser: Any, url: str) -> tuple[Any, Counting]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    counting = Counting()
    cdp = await page.context.new_cdp_session(page)
    cdp.on("Network.requestWillBeSent", counting.started)
    cdp.on("Network.loadingFinished", counting.finished)
    cdp.on("Network.loadingFailed", counting.failed)
    cdp.on("Network.webSocketFrameReceived", counting.frame)
    await cdp.send("Network.enable")
    await cdp.send("Performance.enable")
    counting.cdp = cdp
    await page.goto(url)
    return page, counting


BUSY = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")


async def keeping_up(page: Any, counting: Counting) -> dict[str, float]:
    """The page's frames applied, the feed's frames received, the main thread's
    busy seconds so far (:data:`BUSY`) and the time: subtract two of these."""
    metrics = await counting.cdp.send("Performance.getMetrics")
    found = {m["name"]: float(m["value"]) for m in metrics["metrics"] if m["name"] in BUSY}
    found["applied"] = float(await page.evaluate("() => Number(document.body.dataset.ticks || 0)"))
    found["received"] = float(counting.requests["feed"])
    found["time"] = time.monotonic()
    return found


def line(found: tuple[Counter[str], Counter[str]]) -> str:
    sizes, requests = found
    parts = [f"{what} {sizes[what] / 1e3:,.1f} kB ({requests[what]})"
             for what in ("history", "workers", "feed", "topology", "page", "other")
             if requests[what]]
    return f"{sum(sizes.values()) / 1e3:,.1f} kB: " + ", ".join(parts)


async def measure(services: int, backends: int, after: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(services), str(backends),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None
    assert child.stdout is not None
    stdin, stdout = child.stdin, child.stdout

    async def ask(command: str) -> float:
        stdin.write(command.encode() + b"\n")
        await stdin.drain()
        return float(await stdout.readline())

    out: dict[str, Any] = {}
    try:
        url = (await stdout.readline()).decode().strip()
        await asyncio.sleep(5.0)  # a few seconds of history, and a frame for the hello
        executable = shutil.which("chromium")
        assert executable, "needs the system Chromium (apt-get install chromium)"
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=executable, args=ARGS)
            page, counting = await counted_page(browser, url + "/")
            out["took"] = await counting.quiet()
            out["open"] = counting.take()
            first = await keeping_up(page, counting)
            await asyncio.sleep(after)
            last = await keeping_up(page, counting)
            out["kept"] = {k: last[k] - first.get(k, 0.0) for k in last}
            out["after"] = counting.take()
            await page.close()
            await ask("pause")
            cpu = []
            for _ in range(3):
                before = await ask("cpu")
                page, counting = await counted_page(browser, url + "/")
                await counting.quiet()
                cpu.append(await ask("cpu") - before)
                await page.close()
            out["cpu"] = cpu
            await browser.close()
    finally:
        stdin.write(b"quit\n")
        await child.wait()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 x 50 backends, 10 s after")
    parser.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(*args.serve))
        return 0
    services, backends = (30, 50) if args.quick else (300, 50)
    after = 10.0 if args.quick else 60.0
    found = asyncio.run(measure(services, backends, after))
    scale = 60.0 / after
    sizes, requests = found["after"]
    minute = (Counter({k: round(v * scale) for k, v in sizes.items()}),
              Counter({k: round(v * scale) for k, v in requests.items()}))
    print(f"dashboard page in headless Chromium: {services} services x {backends} backends, "
          f"3 services with 5 calls a second; bytes as received (requests)")
    print(f"  on open ({found['took'] - QUIET:.0f} s): {line(found['open'])}")
    print(f"  the minute after: {line(minute)}")
    kept = found["kept"]
    applied = max(kept["applied"], 1.0)
    print(f"  kept up: {kept['applied']:.0f} frames applied in {kept['time']:.0f} s "
          f"({kept['received']:.0f} received); main thread busy "
          f"{kept['TaskDuration'] * 1e3 / applied:.0f} ms a frame applied (script "
          f"{kept['ScriptDuration'] * 1e3 / applied:.0f}, layout "
          f"{kept['LayoutDuration'] * 1e3 / applied:.0f}, style "
          f"{kept['RecalcStyleDuration'] * 1e3 / applied:.0f}), "
          f"{kept['TaskDuration'] * 100 / kept['time']:.0f}% of the time")
    cpu = found["cpu"]
    print(f"  dashboard process CPU per page open (its loop stopped): least "
          f"{min(cpu) * 1e3:.0f} ms, median {statistics.median(cpu) * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
