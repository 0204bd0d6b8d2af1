"""Namespaces that extend one another (``"users"`` and ``"users:v2"``) stay apart:
one's ``clear()`` leaves the other's entries, on one Redis and on a Cluster."""

from __future__ import annotations

from typing import Any

import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore


def _two_caches(store: RedisStore) -> tuple[Any, Any, list[str]]:
    calls: list[str] = []

    @ml.Cache(ttl=60.0, store=store, name="users")
    def short(x: int) -> int:
        calls.append("users")
        return x

    @ml.Cache(ttl=60.0, store=store, name="users:v2")
    def longer(x: int) -> int:
        calls.append("users:v2")
        return x

    return short, longer, calls


def _clear_keeps_the_longer_namespace(store: RedisStore) -> None:
    short, longer, calls = _two_caches(store)
    assert (short(1), longer(1)) == (1, 1)
    ml.Cache(ttl=60.0, store=store, name="users").clear()
    assert (short(1), longer(1)) == (1, 1)
    assert calls == ["users", "users:v2", "users"]  # users:v2 was still cached
    ml.Cache(ttl=60.0, store=store, name="users:v2").clear()
    assert (short(1), longer(1)) == (1, 1)
    assert calls == ["users", "users:v2", "users", "users:v2"]
    assert store.fallbacks == {}


def test_clear_keeps_a_longer_namespace(redis_server: RedisServer, prefix: str) -> None:
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0)
    try:
        _clear_keeps_the_longer_namespace(store)
    finally:
        store.close()


def test_clear_keeps_a_longer_namespace_on_the_cluster(redis_cluster: Any,
                                                        prefix: str) -> None:
    store = RedisStore(redis_cluster.url, prefix=f"ns{prefix}", timeout=2.0)
    try:
        _clear_keeps_the_longer_namespace(store)
    finally:
        store.close()


def test_clear_still_removes_the_index_and_locks(redis_server: RedisServer, prefix: str,
                                                 raw: redis.Redis) -> None:
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, cache_lock=5.0)
    try:
        short, _, _ = _two_caches(store)
        short(1)
        raw.set(f"{prefix}:cache:users:l:stuck", "token", px=60_000)  # a lock left behind
        assert len(raw.keys(f"{prefix}:cache:users:[efl]*")) == 3  # entry, index, lock
        ml.Cache(ttl=60.0, store=store, name="users").clear()
        assert raw.keys(f"{prefix}:cache:users:[efl]*") == []
    finally:
        store.close()
