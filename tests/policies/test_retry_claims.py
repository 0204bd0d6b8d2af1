"""What docs/policies/retry.md promises under load, against real loopback servers: the
retry budget caps retries during an outage (threads and asyncio tasks), and a
server's Retry-After is honoured and bounded."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx

import meshlite as ml
from meshlite.testing import FakeBackend, FakeClock

CALLS, IN_FLIGHT = 600, 32
RESERVE = 1.0 * 60.0  # min_per_second * ttl: no token expires during the test
BOUND = RESERVE + 0.2 * CALLS


def _retry() -> ml.Retry:
    return ml.Retry(attempts=3, backoff=ml.backoff.constant(0.001),
                    on_result=lambda r: r.status_code >= 500,
                    budget=ml.RetryBudget(ratio=0.2, min_per_second=1.0, ttl=60.0))


def test_an_outage_gets_no_more_retries_than_the_budget_from_threads() -> None:
    with FakeBackend(error_rate=1.0) as backend, httpx.Client(
            limits=httpx.Limits(max_connections=IN_FLIGHT)) as client:
        pipeline = ml.Pipeline(_retry())
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            statuses = list(pool.map(lambda _: pipeline.call(client.get, backend.url).status_code,
                                     range(CALLS)))
        retries = backend.request_count - CALLS
    assert statuses == [503] * CALLS  # the last answer is returned
    assert BOUND - 5 <= retries <= BOUND  # not 2 * CALLS: the budget, and all of it


async def test_an_outage_gets_no_more_retries_than_the_budget_from_tasks() -> None:
    async with FakeBackend(error_rate=1.0) as backend, httpx.AsyncClient() as client:
        pipeline = ml.Pipeline(_retry())
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> int:
            async with gate:
                response = await pipeline.acall(client.get, backend.url)
                return response.status_code

        statuses = await asyncio.gather(*(one() for _ in range(CALLS)))
        retries = backend.request_count - CALLS
    assert statuses == [503] * CALLS
    assert BOUND - 5 <= retries <= BOUND


async def test_retry_after_through_the_mesh_is_honoured_and_bounded() -> None:
    async with FakeBackend(error_rate=1.0, retry_after="2") as backend:
        clock = FakeClock()
        retry = ml.Retry(attempts=3, backoff=ml.backoff.constant(0.01), clock=clock,
                         on_result=lambda r: r.status_code >= 500, max_retry_after=30.0)
        mesh = ml.Mesh([ml.Service("s", [backend.url], pipeline=ml.Pipeline(retry))])
        async with mesh:
            client = mesh.http("s")
            assert (await client.get("/a")).status_code == 503
            assert clock.sleeps == [2.0, 2.0]  # at least what the server asked, not 0.01
            assert backend.request_count == 3
            backend.set(retry_after="86400")
            assert (await client.get("/b")).status_code == 503
            assert clock.sleeps == [2.0, 2.0]  # more than max_retry_after: no wait at all
            assert backend.request_count == 4  # and no retry
