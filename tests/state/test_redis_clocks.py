"""Hosts whose clocks disagree share one rate limit, one breaker's open period and one
cache TTL: every shared instant is Redis's (``TIME`` in the scripts, TTLs kept by
Redis), never a caller's. Each "host" is a store of its own with policies on a clock
an hour or a day away from the other's, or a process of its own whose ``time.time``
and ``time.monotonic`` are shifted (``skewed_host.py``); and Redis's own clock is
stepped back under a breaker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore
from meshlite.testing import FakeClock

HOUR = 3600.0


def clocks() -> tuple[FakeClock, FakeClock]:
    """Host a's clock, and host b's, a day and an hour ahead of it."""
    return FakeClock(1_000.0), FakeClock(1_000.0 + 25 * HOUR)


def broken() -> None:
    raise ValueError("down")


def test_a_quota_is_one_quota_whatever_the_hosts_clocks(
        store: RedisStore, other_store: RedisStore) -> None:
    a_clock, b_clock = clocks()
    a = ml.RateLimit(rate=1.0, per=60.0, burst=1, mode="reject", name="skew", store=store,
                     clock=a_clock)(lambda: 1)
    b = ml.RateLimit(rate=1.0, per=60.0, burst=1, mode="reject", name="skew",
                     store=other_store, clock=b_clock)(lambda: 1)
    assert a() == 1
    b_clock.advance(HOUR)  # b's clock says the slot freed long ago; Redis's says not
    with pytest.raises(ml.RateLimitedError) as refused:
        b()
    assert 50.0 < refused.value.retry_after <= 60.0  # a duration on Redis's clock


def test_an_open_period_is_one_period_whatever_the_hosts_clocks(
        store: RedisStore, other_store: RedisStore) -> None:
    a_clock, b_clock = clocks()
    options = {"name": "skew", "failure_rate": 0.5, "window": 2, "min_calls": 2,
               "open_seconds": 30.0}
    a = ml.CircuitBreaker(store=store, clock=a_clock, **options)
    b = ml.CircuitBreaker(store=other_store, clock=b_clock, **options)

    for _ in range(2):
        with pytest.raises(ValueError, match="down"):
            a(broken)()
    b_clock.advance(HOUR)  # past the open period on b's clock, not on Redis's
    with pytest.raises(ml.CircuitOpenError) as refused:
        b(lambda: 1)()
    assert refused.value.retry_after is not None
    assert 20.0 < refused.value.retry_after <= 30.0
    # Each host reads the opening instant on its own clock: a moment ago, for both.
    for breaker, clock in ((a, a_clock), (b, b_clock)):
        opened_at = breaker.metrics().opened_at
        assert opened_at is not None
        assert 0.0 <= clock.monotonic() - opened_at < 10.0


def test_a_cache_entry_lives_its_ttl_on_redis_whatever_the_hosts_clocks(
        store: RedisStore, other_store: RedisStore) -> None:
    a_clock, b_clock = clocks()
    calls: list[str] = []

    def load(host: str) -> str:
        calls.append(host)
        return f"loaded by {host}"

    a = ml.Cache(ttl=30.0, stale_ttl=30.0, store=store, clock=a_clock, name="skew")(load)
    b = ml.Cache(ttl=30.0, stale_ttl=30.0, store=other_store, clock=b_clock,
                 name="skew")(load)
    assert a("x") == "loaded by x"
    b_clock.advance(HOUR)  # past the TTL on b's clock: fresh on Redis's
    assert b("x") == "loaded by x"
    assert calls == ["x"]  # b was served a's entry, fresh: no refresh either


# -- Redis's own clock stepped back ----------------------------------------------
# Redis's TIME is its host's wall clock. A step back of Δ (an NTP step, a VM
# restored from a snapshot) leaves every instant a breaker stored Δ ahead of TIME:
# the state below is written as such a step leaves it.

def breaker_key(store: RedisStore, name: str) -> str:
    return f"{store.prefix}:cb:{{{name}}}"


def test_a_step_back_of_redis_clock_does_not_hold_the_circuit_open(
        store: RedisStore, other_store: RedisStore, raw: redis.Redis) -> None:
    options = {"name": "stepped", "failure_rate": 0.5, "window": 2, "min_calls": 2,
               "open_seconds": 30.0}
    a = ml.CircuitBreaker(store=store, **options)
    for _ in range(2):
        with pytest.raises(ValueError, match="down"):
            a(broken)()
    key = breaker_key(store, "stepped")
    for field in ("oa", "ou"):  # Redis's clock put an hour back
        raw.hincrby(key, field, int(HOUR * 1e6))
    b = ml.CircuitBreaker(store=other_store, **options)
    with pytest.raises(ml.CircuitOpenError) as refused:
        b(lambda: 1)()
    assert refused.value.retry_after is not None
    assert refused.value.retry_after <= 30.0  # not an hour and a half
    opened_at = b.metrics().opened_at
    assert opened_at is not None
    assert opened_at <= time.monotonic()  # not in the future
    assert int(raw.hget(key, "ou") or 0) - int(raw.hget(key, "oa") or 0) == 30_000_000


def test_a_step_back_of_redis_clock_does_not_freeze_a_time_window(
        store: RedisStore, raw: redis.Redis) -> None:
    breaker = ml.CircuitBreaker(name="window", failure_rate=0.5, window=1.0,
                                window_type="time", min_calls=2, open_seconds=30.0,
                                store=store)
    call = breaker(lambda: 1)
    call()
    key = breaker_key(store, "window")
    raw.hincrby(key, "hd", int(HOUR))  # the window's head an hour ahead of TIME
    for _ in range(20):
        call()  # successes a step back: forgotten a window later, not an hour later
    time.sleep(1.2)
    for _ in range(2):
        with pytest.raises(ValueError, match="down"):
            breaker(broken)()
    assert breaker.state == "open"  # 2 of 2 calls in the last second failed


# -- another host, whose every clock is off ----------------------------------------

SKEWED_HOST = Path(__file__).with_name("skewed_host.py")


@pytest.mark.parametrize("wall", [HOUR, -HOUR, 5.0], ids=["ahead", "behind", "ntp"])
def test_a_host_with_skewed_clocks_shares_one_quota_breaker_and_cache(
        store: RedisStore, redis_server: RedisServer, prefix: str, wall: float) -> None:
    quota = ml.RateLimit(rate=1.0, per=60.0, burst=1, mode="reject", name="skew",
                         store=store)(lambda: 1)
    assert quota() == 1
    def profile(x: str) -> str:
        return f"loaded by the first host: {x}"

    # The same function on every host: one module and name.
    profile.__module__, profile.__qualname__ = "users", "profile"
    cache = ml.Cache(ttl=30.0, stale_ttl=30.0, store=store, name="skew")(profile)
    assert cache("x") == "loaded by the first host: x"
    run = subprocess.run(
        [sys.executable, str(SKEWED_HOST), redis_server.url, prefix],
        env={**os.environ, "SKEW_WALL": str(wall), "SKEW_MONOTONIC": str(-7 * 24 * HOUR)},
        capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(run.stdout)
    assert abs(seen["wall"] - time.time() - wall) < 30  # its clocks were off indeed
    assert seen["monotonic"] < time.monotonic()
    # Its quota is the first host's: the one slot is taken, freed a minute after it was.
    assert isinstance(seen["quota"], float)
    assert 30.0 < seen["quota"] <= 60.0
    # Its cache read is the first host's entry, fresh: no load there.
    assert (seen["cached"], seen["loads"]) == ("loaded by the first host: x", [])
    # It opened the breaker for 30 s on Redis's clock, for both hosts.
    assert isinstance(seen["breaker"], float)
    assert 20.0 < seen["breaker"] <= 30.0
    with pytest.raises(ml.CircuitOpenError) as refused:
        ml.CircuitBreaker(name="skew", failure_rate=0.5, window=2, min_calls=2,
                          open_seconds=30.0, store=store)(lambda: 1)()
    assert refused.value.retry_after is not None
    assert 20.0 < refused.value.retry_after <= 30.0
