"""A hung Redis (``SIGSTOP``: it accepts connections and answers nothing) meets async
decisions that need a new connection: the handshake must not wait forever."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore, StoreUnavailableError

RATE = 10_000_000.0  # never reached: every decision admits


async def work() -> int:
    return 1


async def test_a_new_connection_to_a_hung_redis_falls_back(fresh_server: RedisServer) -> None:
    store = RedisStore(fresh_server.url, timeout=0.05, connect_timeout=0.2,
                       retry_interval=0.05)
    call = ml.RateLimit(RATE, store=store, name="hung", mode="reject")(work)
    fresh_server.pause()
    try:
        # No connection yet: the first decision connects, then sends HELLO, which a
        # stopped Redis never answers (the socket is accepted by the kernel).
        assert await asyncio.wait_for(call(), 10.0) == 1  # the in-process limiter
        assert store.fallbacks == {("rate_limit", "local"): 1}
        assert not store.available
        await asyncio.sleep(0.06)  # past the retry instant: the next one probes
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(store.acommand("PING"), 10.0)
    finally:
        fresh_server.resume()
    deadline = time.monotonic() + 5.0
    while not store.available:  # a probe reconnects once Redis answers again
        assert time.monotonic() < deadline
        await asyncio.sleep(0.06)
        assert await call() == 1
    await store.aclose()
    store.close()


async def test_many_tasks_meeting_a_hung_redis_all_return(fresh_server: RedisServer) -> None:
    # A timeout a loaded machine's first decision (connecting included) still meets.
    store = RedisStore(fresh_server.url, timeout=0.5, connect_timeout=0.2,
                       retry_interval=0.05, max_connections=8)
    call = ml.RateLimit(RATE, store=store, name="many", mode="reject")(work)
    assert await call() == 1
    fresh_server.pause()
    try:
        results = await asyncio.wait_for(asyncio.gather(*(call() for _ in range(200))),
                                         10.0)
    finally:
        fresh_server.resume()
    assert results == [1] * 200
    assert store.fallbacks[("rate_limit", "local")] == 200
    await store.aclose()
    store.close()


async def test_a_hung_redis_met_while_cleaning_up_after_a_cancellation_falls_back(
        fresh_server: RedisServer) -> None:
    # A cancelled task's cleanup (an `except CancelledError:` block) still runs with
    # a cancel request counted in Task.cancelling(). The store's own bound on a
    # request must take back only its own cancellation, as asyncio.timeout does:
    # the hung request is a store failure (the limiter falls back), not a second
    # cancellation of the task.
    store = RedisStore(fresh_server.url, timeout=0.05, connect_timeout=0.2,
                       retry_interval=0.05)
    call = ml.RateLimit(RATE, store=store, name="cleanup", mode="reject")(work)
    assert await call() == 1  # connected: the hung request is the EVALSHA itself
    seen: list[object] = []

    async def cancelled_then_cleans_up() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            seen.append(task.cancelling())
            seen.append(await call())
            seen.append(task.cancelling())
            raise

    fresh_server.pause()
    try:
        cleaner = asyncio.ensure_future(cancelled_then_cleans_up())
        await asyncio.sleep(0)
        cleaner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(cleaner, 10.0)
    finally:
        fresh_server.resume()
    assert seen == [1, 1, 1]
    assert store.fallbacks == {("rate_limit", "local"): 1}
    await store.aclose()
    store.close()


async def test_a_redis_restarted_then_hung_holds_no_decision_for_the_hang(
        fresh_server: RedisServer) -> None:
    # After a restart the pool's idle connections are closed by the server; redis-py
    # opens such a one again inside get_connection. Unbounded there, a Redis that then
    # hung (SIGSTOP: connects, answers nothing) held decisions for the whole hang.
    store = RedisStore(fresh_server.url, timeout=0.5, connect_timeout=0.2,
                       retry_interval=0.05, max_connections=8)
    call = ml.RateLimit(RATE, store=store, name="restart", mode="reject")(work)
    assert await asyncio.gather(*(call() for _ in range(8))) == [1] * 8  # 8 pooled
    fresh_server.kill()
    fresh_server.start()  # the same port: every pooled connection is closed now
    await asyncio.sleep(0.1)  # the loop reads each connection's end
    fresh_server.pause()
    try:
        started = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*(call() for _ in range(8))), 20.0)
        took = time.monotonic() - started
    finally:
        fresh_server.resume()
    assert results == [1] * 8  # fell back: the in-process limiter
    # connect_timeout + timeout at most, with room for a loaded machine (was the
    # hang: 20 s here, until wait_for ended it)
    assert took < 5.0
    assert store.fallbacks[("rate_limit", "local")] >= 1
    await store.aclose()
    store.close()
