"""MemoryStore: the Store protocol in memory, shared by name, on any clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import meshlite as ml
from meshlite.state import MemoryStore
from meshlite.testing import FakeClock


class Boom(Exception):
    pass


def test_rate_limits_of_one_name_share_a_quota(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    a = ml.RateLimit(1.0, burst=2, store=store, name="q", mode="reject")(int)
    b = ml.RateLimit(1.0, burst=2, store=store, name="q", mode="reject")(int)
    a()
    b()
    with pytest.raises(ml.RateLimitedError):
        a()
    clock.advance(1.0)
    assert b() == 0
    other = ml.RateLimit(1.0, burst=1, store=store, name="other", mode="reject")(int)
    assert other() == 0


def test_wait_mode_and_keys(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    call = ml.RateLimit(2.0, burst=1, store=store, name="w", key=lambda t: t,
                        clock=clock)(lambda t: t)
    assert call("a") == "a"
    assert call("b") == "b"  # its own quota: no wait
    assert clock.sleeps == []
    assert call("a") == "a"
    assert clock.sleeps == [pytest.approx(0.5)]


def test_breakers_of_one_name_share_a_state(clock: FakeClock) -> None:
    store = MemoryStore()
    options: dict[str, Any] = {"name": "svc", "window": 4, "min_calls": 2, "store": store,
                               "open_seconds": 10.0, "half_open_calls": 1, "clock": clock}
    a, b = ml.CircuitBreaker(**options), ml.CircuitBreaker(**options)

    def fail() -> None:
        raise Boom

    for _ in range(2):
        with pytest.raises(Boom):
            a(fail)()
    assert b.state == "open"
    clock.advance(10.0)
    assert b(lambda: 1)() == 1  # the trial
    assert a.state == "closed"
    b.force_open()
    assert a.state == "forced_open"


def test_caches_of_one_namespace_share_entries(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    a = ml.Cache(ttl=10.0, store=store)
    b = ml.Cache(ttl=10.0, store=store)
    assert a(square)(3) == b(square)(3) == 9
    assert calls == [3]
    assert b.invalidate(3) == 1
    assert a(square)(3) == 9
    clock.advance(10.0)
    assert b(square)(3) == 9
    assert calls == [3, 3, 3]
    a.clear()
    assert b(square)(3) == 9
    assert len(calls) == 4


def test_stale_entries_are_served_and_refreshed(clock: FakeClock) -> None:
    n = [0]

    def count() -> int:
        n[0] += 1
        return n[0]

    call = ml.Cache(ttl=1.0, stale_ttl=5.0, store=MemoryStore(clock=clock))(count)
    assert call() == 1
    clock.advance(2.0)
    assert call() == 2  # sync: refreshed inline by the first caller


async def test_async_policies_on_a_memory_store(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)

    async def work(x: int) -> int:
        await asyncio.sleep(0)
        return x

    limited = ml.RateLimit(1.0, burst=1, store=store, name="a", mode="reject")(work)
    cached = ml.Cache(ttl=5.0, store=store)(work)
    guarded = ml.CircuitBreaker(name="a", store=store)(work)
    assert await limited(1) == 1
    with pytest.raises(ml.RateLimitedError):
        await limited(1)
    assert await asyncio.gather(cached(2), cached(2)) == [2, 2]
    assert await guarded(3) == 3


def test_bad_max_keys() -> None:
    with pytest.raises(ml.ConfigError, match="MemoryStore: max_keys must be"):
        MemoryStore(max_keys=0)


def test_the_state_layer_imports_no_policy() -> None:
    import ast
    from pathlib import Path

    import meshlite.state

    found = []
    for path in Path(meshlite.state.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                if "policies" in module:
                    found.append(f"{path.name}: {module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.name}: {a.name}" for a in node.names if "policies" in a.name]
    assert found == []
