"""Every key a RedisStore writes has a TTL, and a forced-open breaker's lifetime is
the store's ``state_ttl``."""

from __future__ import annotations

import time

import pytest
import redis

import meshlite as ml
from meshlite.discovery import RedisRegistry
from meshlite.state import RedisStore


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def test_every_key_written_has_a_ttl(store: RedisStore, raw: redis.Redis) -> None:
    limit = ml.RateLimit(5.0, store=store, name="api", key=lambda user: user)
    limit(lambda user: 1)("user-1")
    for window in ({"window": 4}, {"window": 10.0, "window_type": "time"}):
        name = f"cb-{window.get('window_type', 'count')}"
        cb = ml.CircuitBreaker(store=store, name=name, min_calls=2, **window)
        cb(lambda: 1)()
        with pytest.raises(Boom):
            cb(boom)()
    ml.CircuitBreaker(store=store, name="forced").force_open()
    cache = ml.Cache(ttl=30.0, stale_ttl=5.0, store=store)
    cached = cache(lambda x: x * 2)
    assert cached(2) == 4
    cache.invalidate(2)
    assert cached(3) == 6
    locked = RedisStore(store.url if isinstance(store.url, str) else "",
                        prefix=store.prefix, timeout=2.0, cache_lock=5.0)
    assert locked.cache("ns", 30.0, 0.0).lock("k")
    RedisRegistry("users", store=store, ttl=10.0).register("http://127.0.0.1:80")
    keys = list(raw.scan_iter(match=f"{store.prefix}:*"))
    kinds = {k.decode().split(":")[1] for k in keys}
    assert kinds == {"rl", "cb", "cache", "reg"}
    assert len(keys) >= 9
    for key in keys:
        assert raw.pttl(key) > 0, f"{key!r} has no TTL"
    locked.close()


def test_breaker_keys_live_state_ttl_after_the_last_change(redis_server: object,
                                                           raw: redis.Redis,
                                                           prefix: str) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    store = RedisStore(url, prefix=prefix, timeout=2.0, state_ttl=3600.0)
    cb = ml.CircuitBreaker(store=store, name="pay", open_seconds=30.0)
    cb.force_open()
    ttl = raw.pttl(f"{prefix}:cb:{{pay}}")
    assert 3590_000 < ttl <= 3600_000  # forced open for state_ttl, then forgotten
    # Never shorter than twice the open period.
    short = RedisStore(url, prefix=prefix + "s", timeout=2.0, state_ttl=1.0)
    ml.CircuitBreaker(store=short, name="pay", open_seconds=30.0).force_open()
    assert 59_000 < raw.pttl(f"{prefix}s:cb:{{pay}}") <= 60_000
    store.close()
    short.close()


def test_a_forced_open_breaker_closes_when_its_state_expires(redis_server: object,
                                                             prefix: str) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    store = RedisStore(url, prefix=prefix, timeout=2.0, state_ttl=0.05)
    cb = ml.CircuitBreaker(store=store, name="pay", open_seconds=0.01)
    cb.force_open()
    assert cb.state == "forced_open"
    deadline = time.monotonic() + 5.0
    while cb.state != "closed":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cb(lambda: "ran")() == "ran"
    store.close()
