"""A reload that takes a backend out of a service while calls are in flight to it,
the service rebuilt (its balancer changed): the attempts in flight finish, and the
later attempts of those calls (retries, made on the retired service while it drains)
never go back to the backend the config no longer names. Real FakeBackends, a real
HTTP client, a real config file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

import meshlite as ml
from meshlite.testing import FakeBackend

CONFIG = """services:
  users:
    backends: {backends}
    balancer: {balancer}
    retry: {{attempts: 3, backoff: 0.01}}
"""
CALLS = 10
SLOW = 0.5  # the removed backend's answer: in flight while the reload runs (a bound)


async def _until(predicate: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: never happened"
        await asyncio.sleep(0.005)


def _write(path: Path, urls: list[str], balancer: str) -> None:
    path.write_text(CONFIG.format(backends=[*urls], balancer=balancer).replace("'", '"'))


async def test_retries_of_calls_in_flight_never_go_to_a_removed_backend(
        tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend(latency=SLOW, error_rate=1.0, error_status=503) as gone, \
            FakeBackend() as new:
        _write(path, [gone.url], "round_robin")
        async with ml.Mesh.from_config(str(path)) as mesh, mesh.http("users") as client:
            calls = [asyncio.create_task(client.get(f"/u/{i}")) for i in range(CALLS)]
            await _until(lambda: gone.stats.requests == CALLS, "every call reached it")
            _write(path, [new.url], "p2c_ewma")  # a rebuilt service without it
            assert await mesh.reload()
            answers = await asyncio.gather(*calls, return_exceptions=True)
    # Each call's first attempt was answered (503), and none was sent there again:
    # was 3 attempts each, the retries resent to the backend no longer configured.
    assert gone.stats.requests == CALLS
    assert new.stats.requests == 0  # the retired service's routing: never mixed
    for answer in answers:
        assert isinstance(answer, ml.NoHealthyBackendError), answer


async def test_retries_go_to_the_backends_the_service_keeps(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend(latency=SLOW, error_rate=1.0, error_status=503) as gone, \
            FakeBackend(latency=SLOW) as kept:
        _write(path, [gone.url, kept.url], "round_robin")
        async with ml.Mesh.from_config(str(path)) as mesh, mesh.http("users") as client:
            calls = [asyncio.create_task(client.get(f"/u/{i}")) for i in range(CALLS)]
            await _until(lambda: gone.stats.requests + kept.stats.requests == CALLS,
                         "every call's first attempt in flight")
            first = gone.stats.requests
            assert first > 0
            _write(path, [kept.url], "p2c_ewma")
            assert await mesh.reload()
            answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200] * CALLS
    assert gone.stats.requests == first  # each retry went to the backend kept
    assert kept.stats.requests == CALLS  # its own first attempts, and the retries
    assert all(isinstance(a, httpx.Response) for a in answers)
