"""One mesh shared by threads (mesh.call_sync, mesh.http_sync) and asyncio tasks
(mesh.call, mesh.http, mesh.aiohttp) at once, through a breaker, a bulkhead, a rate
limit, retries on a budget and outlier detection, against real loopback backends,
some tasks cancelled mid-call: the Prometheus exposition scraped over HTTP counts
exactly what the callers saw, and nothing is left in flight or held."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import urllib.request

import httpx

import meshlite as ml
from meshlite.mesh import Mesh
from meshlite.observability import start_http_server
from meshlite.routing import Backend, OutlierDetection, Service
from meshlite.testing import FakeBackend

SECONDS = 1.0


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


class Seen:
    """What the callers saw: outcomes by name, from any thread."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1


def threads_calling(mesh: Mesh, seen: Seen, stop: threading.Event) -> list[threading.Thread]:
    def run(n: int) -> None:
        with httpx.Client() as plain, mesh.http_sync("s") as routed:
            def get(backend: Backend) -> None:
                plain.get(backend.address + "/x").raise_for_status()

            while not stop.is_set():
                try:
                    if n % 2:
                        mesh.call_sync("s", get)
                        seen("ok")
                    else:
                        status = routed.get("/x").status_code
                        seen("ok" if status < 500 else f"http_{status}")
                except Exception as error:
                    seen(type(error).__name__)
                    time.sleep(0.001)

    return [threading.Thread(target=run, args=(n,)) for n in range(4)]


async def task_calling(mesh: Mesh, seen: Seen, n: int, stop: threading.Event) -> None:
    async with httpx.AsyncClient() as plain:
        routed, session = mesh.http("s"), mesh.aiohttp("s")

        async def get(backend: Backend) -> None:
            (await plain.get(backend.address + "/x")).raise_for_status()

        while not stop.is_set():
            try:
                if n % 3 == 0:
                    await mesh.call("s", get)
                    status = 200
                elif n % 3 == 1:
                    status = (await routed.get("/x")).status_code
                else:
                    async with session.get("/x") as answer:
                        await answer.read()
                        status = answer.status
                seen("ok" if status < 500 else f"http_{status}")
            except asyncio.CancelledError:
                seen("CancelledError")
                raise
            except Exception as error:
                seen(type(error).__name__)
                await asyncio.sleep(0.001)
        await routed.aclose()


async def test_the_scraped_metrics_count_what_sync_and_async_callers_saw() -> None:
    seen, stop = Seen(), threading.Event()
    backends = [FakeBackend(latency=0.002, error_rate=0.25, seed=n) for n in range(3)]
    for backend in backends:
        await backend.start()
    bulkhead = ml.Bulkhead(6, max_queue=4, queue_timeout=0.05)
    service = Service("s", [b.url for b in backends], outlier_detection=OutlierDetection(
        3, base_ejection_seconds=0.02, max_ejection_percent=67), pipeline=ml.Pipeline(
        ml.Retry(attempts=2, backoff=ml.backoff.constant(0.001),
                 budget=ml.RetryBudget(0.2, 20)),
        ml.CircuitBreaker(failure_rate=0.4, min_calls=10, open_seconds=0.02),
        bulkhead, ml.RateLimit(500, max_wait=0.02)))
    try:
        async with Mesh([service]) as mesh:
            threads = threads_calling(mesh, seen, stop)
            for t in threads:
                t.start()
            tasks = [asyncio.create_task(task_calling(mesh, seen, n, stop)) for n in range(9)]
            cancelled = []
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:  # callers cancelled at any point of a call
                cancelled.append(asyncio.create_task(
                    task_calling(mesh, seen, len(cancelled), stop)))
                await asyncio.sleep(0.01)
                cancelled[-1].cancel()
            stop.set()
            await asyncio.gather(*tasks)
            await asyncio.gather(*cancelled, return_exceptions=True)
            await asyncio.to_thread(lambda: [t.join(30) for t in threads])
            with start_http_server(mesh) as server:
                samples = await asyncio.to_thread(scrape, server.url)
    finally:
        for backend in backends:
            await backend.stop()
    counts = seen.counts
    assert counts["ok"] > 0
    assert samples['meshlite_requests_total{service="s"}'] == sum(counts.values())
    errors = {name.split('error="')[1][:-2]: value for name, value in samples.items()
              if name.startswith("meshlite_request_errors_total{")}
    assert errors == {name: n for name, n in counts.items() if name != "ok"}
    assert samples['meshlite_requests_in_flight{service="s"}'] == 0
    assert samples["meshlite_mesh_in_flight"] == 0
    assert (bulkhead.running, bulkhead.queued) == (0, 0)
    for endpoint in service._endpoints:
        assert (endpoint.in_flight, endpoint._pending) == (0, 0)
        label = f'{{service="s",backend="{endpoint.address}"}}'
        assert samples["meshlite_backend_in_flight" + label] == 0
        assert samples["meshlite_backend_requests_total" + label] == endpoint.requests
        assert samples["meshlite_backend_errors_total" + label] == endpoint.errors
