"""Probes that run in worker threads (a sync ``HealthCheck`` probe): a round of more
backends than the loop's executor has threads queues probes for a thread, and a
probe's ``timeout`` counts from its start, not from the round's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import meshlite as ml
from meshlite.routing import Backend, HealthCheck, HealthChecker, Service


def addresses(n: int) -> list[str]:
    return [f"http://127.0.0.1:{10000 + i}" for i in range(n)]


@pytest.fixture
async def two_threads() -> AsyncIterator[None]:
    """The running loop's executor runs two threads (a busy host's few)."""
    executor = ThreadPoolExecutor(2)
    asyncio.get_running_loop().set_default_executor(executor)
    yield
    executor.shutdown(wait=False, cancel_futures=True)


async def a_round(check: HealthCheck, n: int) -> Service:
    service = Service("s", addresses(n), pipeline=ml.Pipeline(), health_check=check)
    (runner,) = service.components
    assert isinstance(runner, HealthChecker)
    await runner.open()
    try:
        await runner.run_once()
    finally:
        await runner.stop()
    return service


@pytest.mark.usefixtures("two_threads")
async def test_probes_queued_for_a_thread_get_their_whole_timeout() -> None:
    # Ten probes of 0.2 s on two threads: the last start about 0.8 s into the round,
    # past a 0.5 s timeout counted from the round's start (they all timed out).
    def probe(backend: Backend) -> bool:
        time.sleep(0.2)
        return True

    check = HealthCheck(probe, timeout=0.5, interval=30.0, unhealthy_threshold=1)
    service = await a_round(check, 10)
    reasons = [e.health_reason for e in service.endpoints if not e.healthy]
    assert reasons == []


@pytest.mark.usefixtures("two_threads")
async def test_a_probe_that_finds_no_free_thread_within_the_interval_says_so() -> None:
    # Two probes that hang hold both threads: the third cannot start.
    release = threading.Event()

    def probe(backend: Backend) -> bool:
        release.wait(10)
        return True

    check = HealthCheck(probe, timeout=0.1, interval=0.3, unhealthy_threshold=1)
    try:
        service = await a_round(check, 3)
    finally:
        release.set()
    reasons = [e.health_reason for e in service.endpoints]
    assert reasons.count("probe timed out after 0.1 s") == 2
    (late,) = (r for r in reasons if r != "probe timed out after 0.1 s")
    assert late.startswith("probe did not start within 0.3 s: every worker thread")
