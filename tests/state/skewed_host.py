"""Another host, as a process whose clocks are off: run as a script with the
offsets in ``SKEW_WALL`` and ``SKEW_MONOTONIC`` (seconds). ``time.time`` and
``time.monotonic`` (and their ``_ns`` twins) are shifted before meshlite is
imported, so every clock meshlite reads in this process is off, not only the ones a
test injects. It then shares a quota, a breaker and a cache with the test's process
through Redis and prints what it saw, as JSON."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

_WALL = float(os.environ.get("SKEW_WALL", "0"))
_MONO = float(os.environ.get("SKEW_MONOTONIC", "0"))
_time, _time_ns = time.time, time.time_ns
_mono, _mono_ns = time.monotonic, time.monotonic_ns
time.time = lambda: _time() + _WALL  # type: ignore[assignment]  # the skew under test
time.time_ns = lambda: _time_ns() + int(_WALL * 1e9)  # type: ignore[assignment]
time.monotonic = lambda: _mono() + _MONO  # type: ignore[assignment]
time.monotonic_ns = lambda: _mono_ns() + int(_MONO * 1e9)  # type: ignore[assignment]

import meshlite as ml  # noqa: E402  # after the clocks are shifted
from meshlite.state import RedisStore  # noqa: E402


def main(url: str, prefix: str) -> dict[str, object]:
    store = RedisStore(url, prefix=prefix, timeout=2.0)
    seen: dict[str, object] = {"wall": time.time(), "monotonic": time.monotonic()}
    quota = ml.RateLimit(rate=1.0, per=60.0, burst=1, mode="reject", name="skew",
                         store=store)(lambda: 1)
    try:
        quota()
        seen["quota"] = "admitted"
    except ml.RateLimitedError as refused:
        seen["quota"] = refused.retry_after
    loads: list[str] = []

    def profile(x: str) -> str:
        loads.append(x)
        return f"loaded here: {x}"

    # The same function on every host: one module and name.
    profile.__module__, profile.__qualname__ = "users", "profile"
    seen["cached"] = ml.Cache(ttl=30.0, stale_ttl=30.0, store=store, name="skew")(
        profile)("x")
    seen["loads"] = loads
    breaker = ml.CircuitBreaker(name="skew", failure_rate=0.5, window=2, min_calls=2,
                                open_seconds=30.0, store=store)

    def broken() -> None:
        raise ValueError("down")

    for _ in range(2):
        with contextlib.suppress(ValueError):
            breaker(broken)()
    try:
        breaker(lambda: 1)()
        seen["breaker"] = "admitted"
    except ml.CircuitOpenError as refused:
        seen["breaker"] = refused.retry_after
    store.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
