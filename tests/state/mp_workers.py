"""Work done in spawned processes by test_redis_multiprocess.py.

Processes meet through Redis itself: each one announces it is ready (``INCR``)
and blocks on a list the test fills when all are (``BLPOP``), so they start
together without sharing anything but the server.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import redis

import meshlite as ml
from meshlite.state import RedisStore, StoreFallback


def _start_together(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    client.incr(f"{prefix}:ready")
    client.blpop([f"{prefix}:go"], timeout=30)
    client.close()


def rate_limit(url: str, prefix: str, seconds: float) -> int:
    """Hammer one shared limit for ``seconds``; returns the calls admitted."""
    store = RedisStore(url, prefix=prefix, timeout=2.0)
    call = ml.RateLimit(50.0, burst=5, store=store, name="mp", mode="reject")(int)
    _start_together(url, prefix)
    admitted, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            call()
            admitted += 1
        except ml.RateLimitedError:
            pass
    return admitted


def breaker_trial(url: str, prefix: str, index: int) -> str:
    """Process 0 opens the shared breaker; every process then tries a call that blocks
    until released: ``"admitted"``, or the rejection's message."""
    # circuit_cache=0: the test ends the open period behind the processes' backs.
    store = RedisStore(url, prefix=prefix, timeout=2.0, circuit_cache=0.0)
    client = redis.Redis.from_url(url)
    cb = ml.CircuitBreaker(name="mp", window=10, min_calls=5, open_seconds=60.0,
                           half_open_calls=3, store=store)

    def fail() -> None:
        raise RuntimeError("down")

    if index == 0:
        for _ in range(5):
            with contextlib.suppress(RuntimeError):
                cb(fail)()
    _start_together(url, prefix)
    try:
        cb(lambda: None)()
    except ml.CircuitOpenError as error:
        seen = str(error)
    else:
        seen = "admitted while open"
    client.incr(f"{prefix}:checked")
    client.blpop([f"{prefix}:trials"], timeout=30)  # the test ends the open period
    try:
        cb(lambda: client.blpop([f"{prefix}:release"], timeout=30))()
        return f"{seen} | admitted"
    except ml.CircuitOpenError as error:
        client.incr(f"{prefix}:rejected")
        return f"{seen} | {error}"


def cached(url: str, prefix: str) -> Any:
    """Call one cached function with the cross-process lock; it counts its runs in Redis."""
    store = RedisStore(url, prefix=prefix, timeout=2.0, cache_lock=10.0)
    client = redis.Redis.from_url(url)

    def expensive(x: int) -> dict[str, int]:
        client.incr(f"{prefix}:runs")
        time.sleep(0.3)
        return {"x": x, "pid": 1}

    call = ml.Cache(ttl=60.0, store=store)(expensive)
    _start_together(url, prefix)
    return call(7)


def through_an_outage(url: str, prefix: str, signals: str) -> dict[str, Any]:
    """Make decisions while the test kills and restarts Redis; count every outcome.

    Each event the store reports is also a file ``<signals>/<pid>.<Event>`` the test
    waits for; the worker stops when the test creates ``<signals>/stop``.
    """
    store = RedisStore(url, prefix=prefix, timeout=1.0, retry_interval=0.05)
    seen: list[str] = []

    def note(name: str) -> None:
        seen.append(name)
        with open(os.path.join(signals, f"{os.getpid()}.{name}"), "a"):
            pass

    store.add_hook(lambda e: note(type(e).__name__))
    limit = ml.RateLimit(1000.0, store=store, name="outage", mode="reject")
    limit.add_hook(lambda e: note(type(e).__name__) if isinstance(e, StoreFallback) else None)
    call = limit(lambda: "ok")
    _start_together(url, prefix)
    outcomes = {"ok": 0, "rejected": 0, "errors": 0, "attempts": 0}
    stop, end = os.path.join(signals, "stop"), time.monotonic() + 120.0  # a bound only
    while not os.path.exists(stop) and time.monotonic() < end:
        outcomes["attempts"] += 1
        try:
            outcomes[call()] += 1
        except ml.RateLimitedError:
            outcomes["rejected"] += 1
        except Exception:
            outcomes["errors"] += 1
        time.sleep(0.002)
    return {"outcomes": outcomes, "events": seen, "available": store.available}
