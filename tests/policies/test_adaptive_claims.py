"""What docs/policies/adaptive_concurrency.md promises under load: the limit moves when
the service's capacity changes (a deploy, a slower dependency) and the excess is
rejected instead of queueing, also when the clients never fill half the limit."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Coroutine, Generator
from typing import Any

import httpx
import pytest
from aiohttp import web

import meshlite as ml
from meshlite.testing import FakeClock

BASE = 0.010  # the service's latency with no queue, in simulated seconds


class _Suspend:
    def __await__(self) -> Generator[None, None, None]:
        yield


def _equilibrium(capacity: int) -> float:
    """Where the gradient rule stops for a service of ``capacity`` parallel calls
    (docs: ``C * tolerance / (1 - 1/sqrt(limit))``)."""
    limit = float(capacity)
    for _ in range(50):
        limit = capacity / (1 - 1 / math.sqrt(limit))
    return limit


def _simulate(policy: ml.AdaptiveConcurrency, clock: FakeClock, clients: int,
              phases: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """Closed-loop clients call a service that runs ``capacity`` calls in parallel and
    queues the rest (latency ``BASE * max(1, in_flight / capacity)``), the capacity
    changing at each phase's start time. Coroutines are stepped by hand on the fake
    clock: no real time, no event loop. Returns the limit every 0.25 s."""
    in_flight = 0

    def capacity(at: float) -> int:
        return [c for start, c in phases if start <= at][-1]

    async def service() -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            await _Suspend()
        finally:
            in_flight -= 1

    handler = policy.awrap(lambda ctx: service())
    seq = itertools.count()
    queue: list[tuple[float, int, Coroutine[Any, Any, Any] | None]] = [
        (0.0, next(seq), None) for _ in range(clients)]
    trace: list[tuple[float, int]] = []
    end = phases[-1][0] + 6.0
    while queue and queue[0][0] <= end:
        at, _, call = heapq.heappop(queue)
        clock.advance(at - clock.monotonic())
        while len(trace) * 0.25 <= at:
            trace.append((len(trace) * 0.25, policy.limit))
        if call is not None:  # this call ends now; its client calls again
            with pytest.raises(StopIteration):
                call.send(None)
            heapq.heappush(queue, (at, next(seq), None))
            continue
        call = handler(ml.CallContext(print, (), {}, "sim", service="sim"))
        try:
            call.send(None)
        except ml.BulkheadFullError:
            heapq.heappush(queue, (at + 0.05, next(seq), None))  # back off, try again
            continue
        latency = BASE * max(1.0, in_flight / capacity(at))
        heapq.heappush(queue, (at + latency, next(seq), call))
    for _, _, call in queue:
        if call is not None:
            with pytest.raises(StopIteration):
                call.send(None)
    return trace


@pytest.mark.parametrize("algorithm", ["gradient", "vegas"])
def test_the_limit_follows_a_service_that_slows_down_under_fewer_clients_than_half_of_it(
        algorithm: str) -> None:
    # 40 clients on a service of capacity 200 never queue: the limit grows until
    # they fill only half of it. Then the service slows to a capacity of 10 (a deploy):
    # the 40 calls in flight queue four deep, but they are still fewer than half the
    # limit. The limit must come down near the new capacity all the same, or nothing
    # is ever rejected and every call waits in the service's queue.
    clock = FakeClock()
    policy = ml.AdaptiveConcurrency(initial_limit=20, algorithm=algorithm,
                                    window=0.025, clock=clock)  # type: ignore[arg-type]
    trace = _simulate(policy, clock, clients=40, phases=[(0.0, 200), (3.0, 10)])
    before = [limit for at, limit in trace if 2.0 <= at < 3.0]
    after = [limit for at, limit in trace if at >= 6.0]
    assert min(before) > 2 * 40 - 10, before  # grew until the clients filled half
    assert all(limit <= 2.5 * 10 for limit in after), after
    assert all(limit >= 0.7 * 10 for limit in after), after
    if algorithm == "gradient":
        assert sum(after) / len(after) == pytest.approx(_equilibrium(10), abs=4)


def test_an_initial_limit_far_above_the_clients_comes_down_to_capacity() -> None:
    clock = FakeClock()
    policy = ml.AdaptiveConcurrency(initial_limit=400, window=0.025, clock=clock)
    trace = _simulate(policy, clock, clients=150, phases=[(0.0, 20)])
    after = [limit for at, limit in trace if at >= 4.0]
    assert all(16 <= limit <= 32 for limit in after), after


def test_app_limited_calls_that_do_not_queue_leave_the_limit_alone() -> None:
    clock = FakeClock()
    policy = ml.AdaptiveConcurrency(initial_limit=400, window=0.025, clock=clock)
    trace = _simulate(policy, clock, clients=150, phases=[(0.0, 1000)])
    assert {limit for at, limit in trace if at >= 1.0} == {400}


async def test_a_real_server_of_small_capacity_gets_a_small_limit() -> None:
    # A loopback aiohttp server runs 8 requests at a time (20 ms each) and queues the
    # rest; 48 clients call it through a limiter started at 200 until 1,500 calls
    # were admitted. The limit must end well below the clients (it stayed at 200).
    capacity, clients, calls = 8, 48, 1500
    gate = asyncio.Semaphore(capacity)

    async def handle(request: web.Request) -> web.Response:
        async with gate:
            await asyncio.sleep(0.02)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    policy = ml.AdaptiveConcurrency(initial_limit=200)
    pipeline = ml.Pipeline(policy)
    admitted, rejected = 0, 0
    try:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as client:
            async def worker() -> None:
                nonlocal admitted, rejected
                while admitted < calls:
                    try:
                        response = await pipeline.acall(client.get, f"http://127.0.0.1:{port}/")
                    except ml.BulkheadFullError:
                        rejected += 1
                        await asyncio.sleep(0.02)
                    else:
                        assert response.status_code == 200
                        admitted += 1

            await asyncio.gather(*(worker() for _ in range(clients)))
    finally:
        await runner.cleanup()
    assert policy.limit <= clients * 3 // 4, policy.limit
    assert rejected > 0
    assert policy.in_flight == 0
