"""A shared breaker whose calls fell back to its in-process state while Redis was down
tells its hooks (and the ``meshlite.breaker`` log) the shared state when the store
decides its calls again, if that is not what they last heard.

During the outage the in-process state opened (logged: ``opened ... calls are rejected
for 5 s``); Redis came back empty, whose empty key reads closed, and calls succeeded from
then on, but nothing said the circuit had closed: the last line about it stayed
``opened``, which operators read as still open. Real redis-server, killed and started
again on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import pytest
from _breaker_events import Seen
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore
from meshlite.testing import FakeClock

WAIT = 20.0
"""Seconds a test waits at most for the store to answer again after a restart."""


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom


async def afail() -> None:
    raise Boom


def ok() -> str:
    return "ok"


async def aok() -> str:
    return "ok"


def shared_breaker(server: RedisServer, **options: Any) -> tuple[RedisStore, ml.CircuitBreaker,
                                                                 Seen]:
    store = RedisStore(server.url, timeout=2.0, retry_interval=0.05)  # on_error="local"
    settings: dict[str, Any] = {"name": "payments", "window": 4, "min_calls": 2,
                                "open_seconds": 5.0, "half_open_calls": 1,
                                "clock": FakeClock()}
    settings.update(options)
    breaker = ml.CircuitBreaker(store=store, **settings)
    seen = Seen()
    breaker.add_hook(seen)
    return store, breaker, seen


def opened_alone(failing: Any) -> None:
    """Fail calls until the in-process state opens (the store is down: the first
    outcome may be lost on the way to it)."""
    for _ in range(10):
        try:
            failing()
        except ml.CircuitOpenError:
            return
        except Boom:
            continue
    raise AssertionError("the in-process state did not open")


def until_shared(call: Any, store: RedisStore) -> Any:
    """Call ``call`` until the store decides it again (rejections of the in-process
    state meanwhile); its result."""
    deadline = time.monotonic() + WAIT
    while True:
        assert time.monotonic() < deadline, "the store did not answer again"
        time.sleep(store.retry_interval)  # past the retry instant: this call probes
        try:
            result = call()
        except ml.CircuitOpenError:
            continue
        if store.available:
            return result


def test_the_close_after_an_outage_is_said(fresh_server: RedisServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    store, breaker, seen = shared_breaker(fresh_server)
    call, failing = breaker(ok), breaker(fail)
    assert call() == "ok"  # decided in Redis: closed
    fresh_server.kill()
    opened_alone(failing)  # the store is down: the in-process state opens
    assert [(c.previous, c.state) for c in seen.changes] == [("closed", "open")]
    fresh_server.start()  # the same port, empty: the shared circuit reads closed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="meshlite.breaker"):
        assert until_shared(call, store) == "ok"
    assert breaker.state == "closed"
    seen.check("closed")  # was: the hooks' last word stayed "open"
    closed = seen.changes[-1]
    assert isinstance(closed, ml._events.CircuitClosed)
    assert (closed.previous, closed.reason) == (
        "open", "the store answers again and its shared state is closed")
    assert [r.getMessage() for r in caplog.records if r.name == "meshlite.breaker"] == [
        "circuit 'payments' closed (the store answers again and its shared state is closed)"]
    store.close()


async def test_the_close_after_an_outage_is_said_async(fresh_server: RedisServer) -> None:
    store, breaker, seen = shared_breaker(fresh_server)
    call, failing = breaker(aok), breaker(afail)
    assert await call() == "ok"
    fresh_server.kill()
    for _ in range(10):
        try:
            await failing()
        except ml.CircuitOpenError:
            break
        except Boom:
            continue
    fresh_server.start()
    deadline = time.monotonic() + WAIT
    while True:
        assert time.monotonic() < deadline, "the store did not answer again"
        await asyncio.sleep(store.retry_interval)
        try:
            assert await call() == "ok"
        except ml.CircuitOpenError:
            continue
        if store.available:
            break
    seen.check("closed")
    assert [(c.previous, c.state) for c in seen.changes] == [("closed", "open"),
                                                             ("open", "closed")]
    await store.aclose()
    store.close()


def test_a_half_open_trial_during_the_outage_then_the_shared_close(
        fresh_server: RedisServer) -> None:
    # The probe's cycle: open, half-open (a trial fails), open again, then the store.
    clock = FakeClock()
    store, breaker, seen = shared_breaker(fresh_server, clock=clock)
    call, failing = breaker(ok), breaker(fail)
    assert call() == "ok"
    fresh_server.kill()
    opened_alone(failing)
    clock.advance(5.0)
    with pytest.raises(Boom):
        failing()  # the trial fails: open again
    assert [c.state for c in seen.changes] == ["open", "half_open", "open"]
    fresh_server.start()
    assert until_shared(call, store) == "ok"
    seen.check("closed")
    assert [c.state for c in seen.changes] == ["open", "half_open", "open", "closed"]
    store.close()


def test_an_outage_that_changed_nothing_says_nothing(fresh_server: RedisServer) -> None:
    store, breaker, seen = shared_breaker(fresh_server)
    call = breaker(ok)
    assert call() == "ok"
    fresh_server.kill()
    assert call() == "ok"  # the in-process state, closed as the shared one was
    assert not store.available
    fresh_server.start()
    assert until_shared(call, store) == "ok"
    assert seen.changes == []
    store.close()


def opened_shared_then_down(server: RedisServer) -> tuple[RedisStore, Any, Seen]:
    """A shared breaker opened in Redis (its hooks heard it from the store); then Redis
    is killed. Returns the store, a succeeding call through the breaker, the hooks."""
    store, breaker, seen = shared_breaker(server, open_seconds=60.0)
    call, failing = breaker(ok), breaker(fail)
    for _ in range(2):
        with pytest.raises(Boom):
            failing()
    assert [(c.previous, c.state) for c in seen.changes] == [("closed", "open")]
    server.kill()
    return store, call, seen


def until_unavailable(call: Any, store: RedisStore) -> None:
    """Call ``call`` until the store is known to be down: the refusal this process
    trusts ends, then it asks the store."""
    deadline = time.monotonic() + WAIT
    while store.available:
        assert time.monotonic() < deadline
        time.sleep(store.retry_interval)
        with contextlib.suppress(ml.CircuitOpenError):
            call()


def test_a_shared_open_lost_in_the_outage_is_said_closed(fresh_server: RedisServer) -> None:
    # Opened in Redis (the hooks heard it from the store), then Redis is down a while
    # (the in-process state, closed, admits) and restarts empty: the circuit reads
    # closed, and the first call decided there again says so.
    store, call, seen = opened_shared_then_down(fresh_server)
    until_unavailable(call, store)
    assert call() == "ok"  # the in-process state
    fresh_server.start()
    assert until_shared(call, store) == "ok"
    assert [(c.previous, c.state) for c in seen.changes] == [("closed", "open"),
                                                             ("open", "closed")]
    store.close()


def test_a_shared_open_circuit_the_outage_lets_calls_through_is_said_at_once(
        fresh_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # Opened in Redis, then Redis goes down: the in-process state, closed, decides the
    # calls and lets them through. That is said when it starts, not when Redis is back
    # (the log's last word about the circuit was "opened" for the whole outage, while
    # calls went to the backend the circuit was protecting).
    store, call, seen = opened_shared_then_down(fresh_server)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="meshlite.breaker"):
        until_unavailable(call, store)
        assert call() == "ok"  # the in-process state
        assert call() == "ok"
    apart = "the store does not answer: this process's own state, closed, decides calls " \
            "until it does"
    assert [(c.previous, c.state, c.reason) for c in seen.changes] == [
        ("closed", "open", "2 of 2 calls failed"),
        ("open", "closed", apart)]
    assert [r.getMessage() for r in caplog.records if r.name == "meshlite.breaker"] == [
        f"circuit 'payments' closed ({apart})"]  # once, not per call
    fresh_server.start()  # empty: the shared circuit reads closed, as hooks last heard
    assert until_shared(call, store) == "ok"
    assert len(seen.changes) == 2
    store.close()
