"""Hosts whose clocks disagree share one rate limit, one breaker's open period and one
cache TTL: every shared instant is Redis's (``TIME`` in the scripts, TTLs kept by
Redis), never a caller's. Each "host" is a store of its own with policies on a clock
an hour or a day away from the other's."""

from __future__ import annotations

import pytest

import meshlite as ml
from meshlite.state import RedisStore
from meshlite.testing import FakeClock

HOUR = 3600.0


def clocks() -> tuple[FakeClock, FakeClock]:
    """Host a's clock, and host b's, a day and an hour ahead of it."""
    return FakeClock(1_000.0), FakeClock(1_000.0 + 25 * HOUR)


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

    def broken() -> None:
        raise ValueError("down")

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
