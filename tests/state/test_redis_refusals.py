"""A Redis that refuses every decision (full: ``OOM`` under ``maxmemory`` with
``noeviction``): each decision falls back and is counted, the store stays up, and
the log says so once per interval, not once per call."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore, StoreReplyError
from meshlite.state._redis_ops import REPLY_LOG_INTERVAL

RATE = 10_000_000.0  # never reached: every decision admits


def test_a_full_redis_is_logged_once_not_per_call(fresh_server: RedisServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore(fresh_server.url, timeout=2.0)
    admin = redis.Redis.from_url(fresh_server.url)
    call = ml.RateLimit(RATE, store=store, name="full", mode="reject")(lambda: 1)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)  # below what it uses: every write is refused
    try:
        with caplog.at_level(logging.WARNING, logger="meshlite.state"):
            assert sum(call() for _ in range(500)) == 500
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
    assert store.fallbacks == {("rate_limit", "local"): 500}
    assert store.available  # Redis answered: a refusal, not an outage
    refusals = [r for r in caplog.records if "refused one operation" in r.getMessage()]
    assert len(refusals) == 1
    assert "OutOfMemoryError" in refusals[0].getMessage()
    store.close()


def test_the_next_warning_counts_the_repeats(fresh_server: RedisServer,
                                             caplog: pytest.LogCaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore(fresh_server.url, timeout=2.0)
    admin = redis.Redis.from_url(fresh_server.url)
    admin.hset("tampered", "x", 1)
    with caplog.at_level(logging.WARNING, logger="meshlite.state"):
        for _ in range(3):
            with pytest.raises(StoreReplyError, match="WRONGTYPE"):
                store.command("GET", "tampered")
        kind, (last, repeats) = next(iter(store._refusals._seen.items()))
        store._refusals._seen[kind] = (last - REPLY_LOG_INTERVAL, repeats)  # the interval passed
        with pytest.raises(StoreReplyError, match="WRONGTYPE"):
            store.command("GET", "tampered")
    lines = [r.getMessage() for r in caplog.records if "refused one operation" in
             r.getMessage()]
    assert len(lines) == 2
    assert "more since" not in lines[0]
    assert "(2 more since the last such warning)" in lines[1]
    admin.close()
    store.close()


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_database_the_server_lacks_is_an_unavailable_store(
        redis_server: RedisServer, sync: bool, caplog: pytest.LogCaptureFixture) -> None:
    # SELECT 99 of a server with 16 databases fails every new connection's set-up:
    # no operation can pass, so the store is down (and says why), not up and
    # refusing every operation one by one.
    seen: list[object] = []
    store = RedisStore(redis_server.url.rsplit("/", 1)[0] + "/99", timeout=2.0)
    store.add_hook(seen.append)
    call = ml.RateLimit(RATE, store=store, name="db", mode="reject")(
        (lambda: 1) if sync else _one)
    with caplog.at_level(logging.WARNING, logger="meshlite.state"):
        for _ in range(3):
            assert (call() if sync else asyncio.run(call())) == 1  # local fallback
    assert not store.available
    assert [type(e).__name__ for e in seen] == ["StoreUnavailable"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "set-up" in lines[0]
    assert "database number" in lines[0]
    assert "DB index is out of range" in lines[0]
    assert not (store.ping() if sync else asyncio.run(store.aping()))
    store.close()


async def _one() -> int:
    return 1
