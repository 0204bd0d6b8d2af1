"""Key names on a real Redis Cluster: names and prefixes holding ``{`` or ``}`` keep
the keys of each multi-key script in one slot (no ``CROSSSLOT``), and stay apart."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import meshlite as ml
from meshlite.state import RedisStore

_names = itertools.count()


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def prefix() -> str:
    return f"keys{next(_names)}"


def _open(store: RedisStore, name: str) -> None:
    breaker = ml.CircuitBreaker(store=store, name=name, window=4, min_calls=2)
    for _ in range(2):
        with pytest.raises(Boom):
            breaker(boom)()


@pytest.mark.parametrize("name", ["}x", "}", "a}b", "{a}", "a{b}c}", "pay"])
def test_breaker_names_with_braces_share_one_slot(redis_cluster: Any, name: str) -> None:
    p = prefix()
    a = RedisStore(redis_cluster.url, prefix=p, timeout=2.0)
    b = RedisStore(redis_cluster.url, prefix=p, timeout=2.0)
    try:
        _open(a, name)
        assert ml.CircuitBreaker(store=b, name=name, window=4).state == "open"
        assert a.fallbacks == {}  # a CROSSSLOT reply made every decision fall back
        assert b.fallbacks == {}
        client = a._clients.sync()
        keys = list(client.scan_iter(match=f"{p}:cb:*"))  # on every primary
        assert len(keys) == 2  # the hash and its window
        assert len({client.keyslot(k) for k in keys}) == 1
    finally:
        a.close()
        b.close()


def test_names_that_end_their_tag_early_stay_apart(redis_cluster: Any) -> None:
    store = RedisStore(redis_cluster.url, prefix=prefix(), timeout=2.0)
    try:
        _open(store, "a}b")  # tagged "{a}" before: a slot shared with "a", keys apart
        assert ml.CircuitBreaker(store=store, name="a", window=4).state == "closed"
        assert ml.CircuitBreaker(store=store, name="#a}b", window=4).state == "closed"
        assert store.fallbacks == {}
    finally:
        store.close()


async def test_a_registry_of_a_service_named_with_braces(redis_cluster: Any) -> None:
    from meshlite.discovery import RedisRegistry

    registry = RedisRegistry("}users", redis_cluster.url, prefix=prefix(), ttl=30.0)
    try:
        await registry.aregister("http://127.0.0.1:80")  # on_error="raise": no CROSSSLOT
        resolved = await registry.resolve()
        assert [b.address for b in resolved.backends] == ["http://127.0.0.1:80"]
    finally:
        await registry.stop()


def test_a_prefix_with_a_tag_pins_every_key_to_one_slot(redis_cluster: Any) -> None:
    store = RedisStore(redis_cluster.url, prefix="{" + prefix() + "}", timeout=2.0)
    try:
        _open(store, "}x")
        limit = ml.RateLimit(rate=1.0, burst=1, name="quota", store=store)
        assert limit(lambda: 1)() == 1
        assert store.fallbacks == {}
    finally:
        store.close()


@pytest.mark.parametrize("bad", ["{}", "app{}", "a{}b{c}"])
def test_a_prefix_with_an_empty_tag_is_refused(bad: str) -> None:
    with pytest.raises(ml.ConfigError, match=r"RedisStore: prefix must be .*empty Cluster "
                                             r"hash tag.*got '"):
        RedisStore("redis://127.0.0.1:1/0", prefix=bad)
