"""A configuration error ending an attempt is the caller's mistake, never the backend's:
routing leaves it out of the backend's counts, latencies and ejection, and a hedge a
client cannot race is refused before a backend is picked for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

import meshlite as ml
from meshlite.testing import FakeBackend


@pytest.fixture
async def good() -> AsyncIterator[FakeBackend]:
    async with FakeBackend() as backend:
        yield backend


def _mesh(urls: list[str]) -> ml.Mesh:
    # The second backend's address has a query: each attempt sent there raises
    # ConfigError (a mistake in the configuration, not a failing backend).
    detection = ml.OutlierDetection(consecutive_failures=1, failure_on=Exception)
    return ml.Mesh([ml.Service("users", urls, balancer="round_robin",
                               outlier_detection=detection)])


def _untouched(mesh: ml.Mesh, address: str) -> None:
    (backend,) = [b for b in mesh.snapshot()["users"].backends if b.address == address]
    assert (backend.requests, backend.errors, backend.ewma) == (0, 0, 0.0)
    assert backend.status == "up"
    assert backend.ejections == 0


async def test_a_config_error_never_counts_against_a_backend(good: FakeBackend) -> None:
    bad = good.url + "/?x=1"
    async with _mesh([good.url, bad]) as mesh, mesh.http("users") as client:
        outcomes = []
        for _ in range(6):
            try:
                outcomes.append((await client.get("/a")).status_code)
            except ml.ConfigError:
                outcomes.append("ConfigError")
        assert outcomes.count("ConfigError") == 3  # never ejected: still its turn
        _untouched(mesh, bad)


def _sync_calls(mesh: ml.Mesh) -> Iterator[object]:
    with mesh.http_sync("users") as client:
        for _ in range(4):
            try:
                yield client.get("/a").status_code
            except ml.ConfigError:
                yield "ConfigError"


async def test_a_config_error_never_counts_against_a_backend_sync(good: FakeBackend) -> None:
    bad = good.url + "/?x=1"
    async with _mesh([good.url, bad]) as mesh:
        outcomes = await asyncio.to_thread(lambda: list(_sync_calls(mesh)))
        assert outcomes.count("ConfigError") == 2
        _untouched(mesh, bad)
