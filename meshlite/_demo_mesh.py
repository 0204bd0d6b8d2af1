"""`meshlite demo`, part two: the same load through plain round robin and the mesh.

Four backends run on loopback in this process (``meshlite.testing.FakeBackend``):
one healthy, one slow, one failing a third of its requests, one down (its port
closed). The same paced load goes through a plain ``httpx.AsyncClient`` doing round
robin by hand with no retries, then through a mesh service (``p2c_ewma``,
``Timeout``, ``Retry``, ``OutlierDetection``), and a side-by-side table compares
them. Non-interactive, about fifteen seconds, and everything it starts (servers,
clients, the mesh) is stopped before it returns.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import httpx

from . import backoff
from ._console import Progress, render_table
from ._events import Event
from ._pipeline import Pipeline
from .mesh._mesh import Mesh
from .policies._retry import Retry
from .policies._timeout import Timeout
from .routing._endpoint import percentile
from .routing._outlier import OutlierDetection
from .routing._service import Service
from .testing._backend import FakeBackend

__all__ = ["LoadResult", "paced_load", "run_mesh_demo"]

CALLS = 300
"""Requests sent each way."""
RATE = 50.0
"""Requests started per second, each way (a paced load, not a flood)."""
CONCURRENCY = 64
"""Most requests in flight at once, each way."""
TIMEOUT = 2.0
"""Seconds one request may take, each way (the mesh's total budget)."""
EJECT_AFTER = 3
"""Failures in a row that eject a backend from the mesh's rotation (for 30 s; at
most half of the backends are out at once)."""
FAST = 0.005
SLOW = 0.25
FLAKY_ERROR_RATE = 1 / 3

_SERVICE = "catalog"


@dataclass(slots=True)
class LoadResult:
    """What one side of the demo measured.

    Attributes:
        calls: Requests sent.
        succeeded: Requests answered with a status below 400.
        latencies: Seconds each request took, failures included, in completion order.
        retries: Retries the side made (plain round robin makes none).
        ejections: Backends the side took out of rotation.
        slow_answers: Requests the slow backend received from this side.
    """

    calls: int
    succeeded: int = 0
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    ejections: int = 0
    slow_answers: int = 0

    @property
    def success_rate(self) -> float:
        """Share of requests that succeeded, 0..1."""
        return self.succeeded / self.calls if self.calls else 0.0

    def quantile(self, q: float) -> float:
        """The ``q``-quantile of the latencies in seconds (nearest rank; 0.0 if none)."""
        value = percentile(sorted(self.latencies), q)
        return 0.0 if value is None else value


async def paced_load(send: Callable[[int], Awaitable[httpx.Response]], result: LoadResult,
                     *, rate: float, concurrency: int, progress: Progress | None = None) -> None:
    """Start ``result.calls`` requests, ``send(0)``, ``send(1)``..., at ``rate`` per
    second with at most ``concurrency`` in flight, and record each in ``result``.

    A request succeeds when it returns a status below 400; an exception (refused,
    reset, timed out) is a failure. Its latency runs from when it got a slot to when
    it ended. The benchmarks use this too, so every system sees the same load.
    """
    limit = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def one(i: int) -> None:
        async with limit:
            start = time.perf_counter()
            try:
                ok = (await send(i)).status_code < 400
            except Exception:  # refused, reset or timed out: a failed request
                ok = False
            result.latencies.append(time.perf_counter() - start)
            result.succeeded += ok
        if progress is not None:
            progress.advance()

    tasks: list[asyncio.Task[None]] = []
    for i in range(result.calls):
        delay = began + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)


async def _plain(urls: Sequence[str], err: TextIO) -> LoadResult:
    """Round robin by hand over ``urls`` with one ``httpx.AsyncClient``, no retries."""
    result = LoadResult(CALLS)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:

        async def send(i: int) -> httpx.Response:
            return await client.get(f"{urls[i % len(urls)]}/items/{i}")

        await paced_load(send, result, rate=RATE, concurrency=CONCURRENCY,
                         progress=Progress(CALLS, "plain round robin", err))
    return result


def _service(urls: Sequence[str], seed: int) -> Service:
    pipeline = Pipeline(
        Timeout(TIMEOUT),
        Retry(attempts=3, backoff=backoff.exponential(initial=0.005, maximum=0.05),
              random=random.Random(seed)),
    )
    return Service(
        _SERVICE, urls, balancer="p2c_ewma", pipeline=pipeline,
        outlier_detection=OutlierDetection(consecutive_failures=EJECT_AFTER,
                                           base_ejection_seconds=30.0),
        random=random.Random(seed),
    )


async def _meshed(urls: Sequence[str], seed: int, err: TextIO) -> LoadResult:
    """The same load through a mesh service over ``urls``."""
    result = LoadResult(CALLS)
    counts: Counter[str] = Counter()

    def count(event: Event) -> None:
        counts[type(event).__name__] += 1

    mesh = Mesh([_service(urls, seed)])
    mesh.add_hook(count)
    async with mesh, mesh.http(_SERVICE, timeout=TIMEOUT) as client:

        async def send(i: int) -> httpx.Response:
            return await client.get(f"/items/{i}")

        await paced_load(send, result, rate=RATE, concurrency=CONCURRENCY,
                         progress=Progress(CALLS, "meshlite", err))
    result.retries = counts["RetryScheduled"]
    result.ejections = counts["BackendEjected"]
    return result


async def _compare(seed: int, err: TextIO) -> tuple[LoadResult, LoadResult]:
    async with (
        FakeBackend(latency=FAST) as healthy,
        FakeBackend(latency=SLOW) as slow,
        FakeBackend(latency=FAST, error_rate=FLAKY_ERROR_RATE, seed=seed) as flaky,
        FakeBackend() as down,
    ):
        down.set(down=True)
        urls = [b.url for b in (healthy, slow, flaky, down)]
        before = slow.request_count
        plain = await _plain(urls, err)
        plain.slow_answers, before = slow.request_count - before, slow.request_count
        meshed = await _meshed(urls, seed, err)
        meshed.slow_answers = slow.request_count - before
    return plain, meshed


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _table(plain: LoadResult, meshed: LoadResult) -> str:
    rows = [
        ("success rate", f"{plain.success_rate:.1%}", f"{meshed.success_rate:.1%}"),
        ("p50 latency", _ms(plain.quantile(0.5)), _ms(meshed.quantile(0.5))),
        ("p99 latency", _ms(plain.quantile(0.99)), _ms(meshed.quantile(0.99))),
        ("retries", plain.retries, meshed.retries),
        ("ejections", plain.ejections, meshed.ejections),
        ("sent to the slow backend", plain.slow_answers, meshed.slow_answers),
    ]
    return render_table(("", "plain round robin", "meshlite"), rows)


def run_mesh_demo(out: TextIO, err: TextIO, seed: int = 1) -> tuple[LoadResult, LoadResult]:
    """Run the comparison, print its table to ``out`` (progress to ``err``).

    Args:
        out: Where the description and the table go.
        err: Where the progress bars go.
        seed: Seed of the flaky backend's errors, the balancer and the retry jitter.

    Returns:
        The plain round robin result and the mesh result.
    """
    out.write(
        f"\nSending {CALLS} GET requests ({RATE:.0f} a second, at most {CONCURRENCY} at a "
        f"time, {TIMEOUT:g} s timeout)\nto four loopback backends: healthy "
        f"({FAST * 1000:.0f} ms), slow ({SLOW * 1000:.0f} ms),\nflaky "
        f"({FAST * 1000:.0f} ms, 503 for a third of requests), down (port closed).\n"
        "  plain round robin: httpx.AsyncClient, each URL in turn, no retries\n"
        f"  meshlite:          p2c_ewma, Timeout({TIMEOUT:g} s) > Retry(3 attempts),\n"
        f"                     OutlierDetection(eject after {EJECT_AFTER} failures)\n"
    )
    out.flush()
    plain, meshed = asyncio.run(_compare(seed, err))
    out.write("\n" + _table(plain, meshed) + "\n")
    out.write("Latencies count every request, failed ones included.\n")
    return plain, meshed
