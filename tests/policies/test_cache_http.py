"""An ``ml.Cache`` in the pipeline of a service called over HTTP: each request goes
past it (a request is no cache key), none is stored, and the cache says so once in
the log; ``mesh.call()`` through the same service keeps caching."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import meshlite as ml
from meshlite.state import MemoryStore
from meshlite.testing import FakeBackend

CACHES = {
    "plain": lambda: ml.Cache(ttl=60),
    "key=": lambda: ml.Cache(ttl=60, key=lambda *args, **kwargs: "one"),
    "stale_ttl": lambda: ml.Cache(ttl=60, stale_ttl=60),
    "shared": lambda: ml.Cache(ttl=60, store=MemoryStore()),
}


def passed_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "meshlite.cache" and "does not cache HTTP requests" in r.getMessage()]


@pytest.mark.parametrize("kind", CACHES)
@pytest.mark.parametrize("client", ["http", "aiohttp"])
async def test_async_http_requests_go_past_a_service_cache(
        kind: str, client: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = CACHES[kind]()
    async with FakeBackend() as backend, ml.Mesh(
            [ml.Service("users", [backend.url], pipeline=ml.Pipeline(cache))]) as mesh:
        for _ in range(3):
            if client == "http":
                assert (await mesh.http("users").get("/users/1")).status_code == 200
            else:
                async with mesh.aiohttp("users").get("/users/1") as response:
                    assert response.status == 200
    assert backend.request_count == 3  # each one sent
    assert cache.size == 0  # none held: up to maxsize responses before
    assert (cache.hits, cache.misses) == (0, 0)
    (line,) = passed_lines(caplog)  # said once, not per request
    assert "'users'" in line


@pytest.mark.parametrize("kind", CACHES)
def test_sync_http_requests_go_past_a_service_cache(
        kind: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = CACHES[kind]()
    with FakeBackend() as backend, ml.Mesh(
            [ml.Service("users", [backend.url], pipeline=ml.Pipeline(cache))]) as mesh:
        client = mesh.http_sync("users")
        for _ in range(3):
            assert client.get("/users/1").status_code == 200
    assert backend.request_count == 3
    assert cache.size == 0
    assert len(passed_lines(caplog)) == 1


async def test_mesh_call_through_the_same_service_is_cached(
        caplog: pytest.LogCaptureFixture) -> None:
    cache = ml.Cache(ttl=60)
    calls: list[Any] = []

    async def fetch(backend: str, uid: int) -> int:
        calls.append(uid)
        return uid

    async with FakeBackend() as backend, ml.Mesh(
            [ml.Service("users", [backend.url], pipeline=ml.Pipeline(cache))]) as mesh:
        assert (await mesh.http("users").get("/users/1")).status_code == 200
        assert [await mesh.call("users", fetch, 7) for _ in range(3)] == [7, 7, 7]
    assert calls == [7]
    assert (cache.hits, cache.misses, cache.size) == (2, 1, 1)
    assert len(passed_lines(caplog)) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
