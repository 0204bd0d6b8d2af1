"""Scrapes that take their time (a large mesh, many at once) do not stop the event loop
the service's calls run on: the exposition is rendered in a worker thread, and the
scrapes that arrive while one is rendered share the next render, which still reads
every call that ended before each of them arrived."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from test_metrics_across_reloads import config

import meshlite as ml
from meshlite.observability import prometheus_app, start_http_server
from meshlite.observability._metrics import MetricFamily
from meshlite.testing import FakeBackend


class Slow:
    """A collector in the mesh's registry that takes ``seconds`` to read (as a mesh of
    hundreds of services does) and counts its reads."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reads = 0
        self.entered = threading.Event()
        self.left = threading.Event()

    def collect(self) -> Iterable[MetricFamily]:
        self.reads += 1
        self.entered.set()
        time.sleep(self.seconds)
        self.left.set()
        return []


async def rendering(slow: Slow) -> None:
    deadline = time.monotonic() + 30
    while not slow.entered.is_set():
        assert time.monotonic() < deadline, "the scrape never began rendering"
        await asyncio.sleep(0.005)


def requests_total(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('meshlite_requests_total{service="users"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(text)


async def test_a_slow_dashboard_scrape_does_not_stop_the_services_loop() -> None:
    async with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url])])
        assert mesh.metrics is not None
        slow = Slow(1.0)
        mesh.metrics.register(slow)
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            try:
                async with httpx.AsyncClient(trust_env=False) as client:
                    scrape = asyncio.create_task(client.get(server.url.rstrip("/") + "/metrics"))
                    await rendering(slow)
                    # A call on the loop the dashboard serves from, during the render.
                    assert (await mesh.http("users").get("/users/1")).status_code == 200
                    assert not slow.left.is_set()  # the render was still going
                    assert requests_total((await scrape).text) == 0
            finally:
                await server.stop()


async def test_concurrent_scrapes_share_renders() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    assert mesh.metrics is not None
    slow = Slow(0.3)
    mesh.metrics.register(slow)
    transport = httpx.ASGITransport(app=prometheus_app(mesh))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = await asyncio.gather(*(client.get("/metrics") for _ in range(20)))
    assert {r.status_code for r in answers} == {200}
    assert {requests_total(r.text) for r in answers} == {0}
    # The first scrape's render, then one for the 19 that came while it ran.
    assert slow.reads == 2


async def test_a_scrape_reads_the_calls_that_ended_before_it_came() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    assert mesh.metrics is not None
    slow = Slow(0.3)
    mesh.metrics.register(slow)
    transport = httpx.ASGITransport(app=prometheus_app(mesh))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = asyncio.create_task(client.get("/metrics"))
        await rendering(slow)
        await mesh.call("users", lambda backend: "ok")
        # Not the render under way, which read the registry before the call ended.
        second = await client.get("/metrics")
        assert requests_total((await first).text) == 0
        assert requests_total(second.text) == 1


def read_slowly(port: int, stop: threading.Event, got: list[int],
                reading: threading.Event) -> None:
    """GET /metrics, then read the answer one byte at a time until ``stop`` (set
    ``reading`` after 100 bytes)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while not stop.is_set() and sock.recv(1):
            got[0] += 1
            if got[0] == 100:
                reading.set()
            time.sleep(0.002)


async def test_a_scraper_reading_one_byte_at_a_time_holds_up_nothing_else() -> None:
    async with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service(f"s{i}", [backend.url]) for i in range(60)])
        async with mesh:
            for i in range(60):  # some hundreds of kilobytes of exposition
                assert (await mesh.http(f"s{i}").get("/x")).status_code == 200
            server = await mesh.serve_dashboard(port=0)
            url = server.url.rstrip("/") + "/metrics"
            stop, reading, got = threading.Event(), threading.Event(), [0]
            slow = threading.Thread(target=read_slowly,
                                    args=(server.port, stop, got, reading))
            try:
                async with httpx.AsyncClient(trust_env=False) as client:
                    size = len((await client.get(url)).content)
                    slow.start()
                    assert await asyncio.to_thread(reading.wait, 30)
                    for _ in range(5):  # other scrapes, and calls, meanwhile
                        answer = await client.get(url)
                        assert answer.status_code == 200
                        assert 'meshlite_requests_total{service="s59"} 1' in answer.text
                        assert (await mesh.http("s0").get("/x")).status_code == 200
                assert got[0] < size  # the slow one was still reading its answer
            finally:
                stop.set()
                await asyncio.to_thread(slow.join)
                await server.stop()


def scrape_until(url: str, stop: threading.Event, problems: list[str], count: list[int]
                 ) -> None:
    """Scrape ``url`` until ``stop``: every answer must be a valid exposition with no
    series twice (``problems`` says what was not)."""
    with httpx.Client(trust_env=False, timeout=30) as client:
        while not stop.is_set():
            try:
                answer = client.get(url)
            except httpx.HTTPError as error:
                problems.append(f"{url}: {error!r}")
                continue
            if answer.status_code != 200:
                problems.append(f"{url}: {answer.status_code} {answer.text[:200]}")
                continue
            seen = set()
            for family in text_string_to_metric_families(answer.text):
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key in seen:
                        problems.append(f"{url}: {key} twice")
                    seen.add(key)
            count[0] += 1


async def test_scrapes_during_reloads_that_remove_a_service_and_while_closing(
        tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text(config(backend.url, orders=True))
        mesh = ml.Mesh.from_config(path)
        metrics_server = start_http_server(mesh)
        stop, problems, count = threading.Event(), [], [0]
        async with mesh:
            dashboard = await mesh.serve_dashboard(port=0)
            urls = [metrics_server.url, dashboard.url.rstrip("/") + "/metrics"] * 2
            scrapers = [threading.Thread(target=scrape_until, args=(u, stop, problems, count))
                        for u in urls]
            for scraper in scrapers:
                scraper.start()
            for round_ in range(10):  # orders removed, then back, and again
                path.write_text(config(backend.url, orders=round_ % 2 == 1))
                assert await mesh.reload()
                assert (await mesh.http("users").get("/x")).status_code == 200
                if round_ % 2 == 1:
                    assert (await mesh.http("orders").get("/x")).status_code == 200
                await asyncio.sleep(0.02)
            closing = asyncio.ensure_future(mesh.aclose())  # scraped while it closes
            await asyncio.sleep(0.2)
            await closing
            await asyncio.sleep(0.2)  # and once closed
            stop.set()
            for scraper in scrapers:
                await asyncio.to_thread(scraper.join)
            await dashboard.stop()
        metrics_server.stop()
    assert problems == []
    assert count[0] > len(urls)
