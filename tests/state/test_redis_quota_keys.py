"""Rate-limit keys name one (quota, per-call key) pair each: the quota ``api:gold``
and the key ``gold`` of the quota ``api`` are two budgets, in memory, on one Redis
and on a Cluster, where a name's braces pin no quota to one slot."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import MemoryStore, RedisStore

_prefixes = itertools.count()

Quota = tuple[str, str | None]  # (name, per-call key)

# Pairs of quotas whose keys were one Redis key: <prefix>:rl:<name>[:<key>].
COLLIDED: list[tuple[Quota, Quota]] = [
    (("api:gold", None), ("api", "gold")),
    (("api:gold", "x"), ("api", "gold:x")),
    (("inbound:/orders", "ip:127.0.0.1"), ("inbound", "/orders:ip:127.0.0.1")),
    (("a{b:c}", None), ("a{b", "c}")),
]
# ... and a pair that an escape of ':' alone would make collide.
ESCAPED: list[tuple[Quota, Quota]] = [(("a%3Ab", None), ("a:b", None))]


def _call(store: Any, name: str, key: str | None) -> Callable[[], int]:
    """A call of quota ``(name, key)``: 2 calls, then one an hour."""
    limit = ml.RateLimit(1.0, per=3600.0, burst=2, store=store, name=name, mode="reject",
                         key=None if key is None else (lambda: key))
    return limit(lambda: 1)


def _admitted(call: Callable[[], int], n: int) -> int:
    count = 0
    for _ in range(n):
        with contextlib.suppress(ml.RateLimitedError):
            count += call()
    return count


def _apart(store: Any, first: Quota, second: Quota) -> None:
    assert _admitted(_call(store, *first), 3) == 2
    assert _admitted(_call(store, *second), 3) == 2  # a budget of its own, untouched


@pytest.fixture(params=["memory", "redis", "cluster"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A MemoryStore, a RedisStore on one Redis, and one on the 3-primary Cluster."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    else:
        url = request.getfixturevalue("redis_cluster").url
    store = RedisStore(url, prefix=f"qk{next(_prefixes)}", timeout=2.0)
    try:
        yield store
        assert store.fallbacks == {}  # every decision was Redis's (no CROSSSLOT)
    finally:
        store.close()


@pytest.mark.parametrize(("first", "second"), COLLIDED + ESCAPED)
def test_quotas_whose_keys_collided_have_their_own_budgets(any_store: Any, first: Quota,
                                                           second: Quota) -> None:
    _apart(any_store, first, second)


def test_quota_keys_read_as_written(redis_server: RedisServer, prefix: str,
                                    raw: redis.Redis) -> None:
    store = RedisStore(redis_server.url, prefix=prefix, timeout=2.0)
    try:
        for name, key in [("api", "gold"), ("api:gold", None), ("users", None),
                          ("inbound:/orders/{id}", "ip:127.0.0.1"), ("50%", None)]:
            assert _call(store, name, key)() == 1
    finally:
        store.close()
    assert sorted(k.decode() for k in raw.keys(f"{prefix}:rl:*")) == [
        f"{prefix}:rl:50%25", f"{prefix}:rl:api%3Agold", f"{prefix}:rl:api:gold",
        f"{prefix}:rl:inbound%3A/orders/%7Bid%7D:ip:127.0.0.1", f"{prefix}:rl:users"]


def test_a_braced_route_pattern_spreads_its_quota_over_the_cluster(
        redis_cluster: Any) -> None:
    p = f"qk{next(_prefixes)}"
    store = RedisStore(redis_cluster.url, prefix=p, timeout=2.0)
    try:
        tenants = [f"ip:127.0.0.{i}" for i in range(12)]
        for tenant in tenants:
            assert _call(store, "inbound:/orders/{id}", tenant)() == 1
        assert store.fallbacks == {}
        client = store._clients.sync()
        keys = list(client.scan_iter(match=f"{p}:rl:*"))  # on every primary
        assert len(keys) == len(tenants)
        # Unescaped, "{id}" was every key's hash tag: one slot, one primary, for
        # every client of every route with an {id}.
        assert len({client.keyslot(k) for k in keys}) == len(tenants)
        assert len({client.get_node_from_key(k).port for k in keys}) == 3
    finally:
        store.close()
