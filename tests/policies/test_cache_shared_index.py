"""A Cache on a RedisStore shared by replicas: ``invalidate()`` in one of them drops
what another stored, also once the namespace's function index was lost (another
replica's ``clear()``, an eviction under ``maxmemory``, a restart). Two stores on one
real redis-server stand for two processes: they share no connection nor memory."""

from __future__ import annotations

from typing import Any

import pytest

import meshlite as ml
from meshlite.state import RedisStore

redis = pytest.importorskip("redis")



db: dict[int, str] = {}


def get_name(uid: int) -> str:
    return db[uid]


@pytest.fixture(autouse=True)
def _names() -> None:
    db.clear()
    db[1] = "Ada"


def test_invalidate_after_another_replica_cleared_the_namespace(
        replicas: tuple[RedisStore, RedisStore]) -> None:
    reader = ml.Cache(ttl=60.0, store=replicas[0], name="users")
    writer = ml.Cache(ttl=60.0, store=replicas[1], name="users")
    read = reader(get_name)
    assert read(1) == "Ada"
    writer.clear()  # an admin endpoint on the other replica
    assert read(1) == "Ada"  # stored again by the reader
    db[1] = "Grace"
    assert writer.invalidate(1) == 1  # the write path, on the other replica
    assert read(1) == "Grace"


def test_invalidate_after_the_index_was_evicted(
        redis_url: str, replicas: tuple[RedisStore, RedisStore]) -> None:
    reader = ml.Cache(ttl=60.0, store=replicas[0], name="users")
    writer = ml.Cache(ttl=60.0, store=replicas[1], name="users")
    read = reader(get_name)
    assert read(1) == "Ada"
    raw: Any = redis.Redis.from_url(redis_url)
    try:  # what maxmemory-policy allkeys-lru (or a restart) may do to any key
        assert raw.delete(f"{replicas[0].prefix}:cache:users:fns") == 1
        raw.delete(*raw.keys(f"{replicas[0].prefix}:cache:users:e:*"))
    finally:
        raw.close()
    assert read(1) == "Ada"
    db[1] = "Grace"
    assert writer.invalidate(1) == 1
    assert read(1) == "Grace"


async def test_async_invalidate_after_another_replica_cleared_the_namespace(
        replicas: tuple[RedisStore, RedisStore]) -> None:
    async def aget_name(uid: int) -> str:
        return db[uid]

    reader = ml.Cache(ttl=60.0, store=replicas[0], name="ausers")
    writer = ml.Cache(ttl=60.0, store=replicas[1], name="ausers")
    read = reader(aget_name)
    assert await read(1) == "Ada"
    writer.clear()
    assert await read(1) == "Ada"
    db[1] = "Grace"
    assert writer.invalidate(1) == 1
    assert await read(1) == "Grace"
