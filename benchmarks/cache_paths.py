"""Python bytecodes a Cache runs per call: a hit and a miss, sync and async, in memory
and on a RedisStore (a redis-server is started on a free loopback port unless
``--url`` is given).

A count that neither the machine's load nor the network moves: run it on two trees
of the code (e.g. ``git stash``, or ``PYTHONPATH`` pointing at an unpacked checkout,
run from outside the repository) to see what a change adds to each path. A miss
calls with a new argument each time (``maxsize`` is large enough that nothing is
evicted); the Redis rows include redis-py's own work and the codec.

    .venv/bin/python benchmarks/cache_paths.py
    .venv/bin/python benchmarks/cache_paths.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from _bytecodes import counting
from redis_store import redis_server

import meshlite as ml
from meshlite.state import RedisStore


def work(x: int) -> int:
    return x + 1


async def awork(x: int) -> int:
    return x + 1


def sync_count(call: Callable[[int], Any], args: Callable[[], int], n: int) -> float:
    call(0)
    with counting() as counts:
        for _ in range(n):
            call(args())
    return sum(counts.values()) / n


def async_count(call: Callable[[int], Awaitable[Any]], args: Callable[[], int], n: int) -> float:
    async def main() -> float:
        await call(0)
        with counting() as counts:
            for _ in range(n):
                await call(args())
        return sum(counts.values()) / n

    return asyncio.run(main())


def rows(where: str, store: RedisStore | None, n: int) -> list[tuple[str, float]]:
    fresh = itertools.count(1)
    out = []
    for kind, fn, count in (("sync", work, sync_count), ("async", awork, async_count)):
        options: dict[str, Any] = {} if store is None else {"store": store, "name": kind}
        call: Any = ml.Cache(ttl=600.0, maxsize=10**7, **options)(fn)
        out.append((f"{where} {kind} hit", count(call, lambda: 0, n)))
        out.append((f"{where} {kind} miss", count(call, lambda: next(fresh), n)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Redis to use instead of starting one")
    parser.add_argument("--calls", type=int, default=1000, help="calls per row")
    options = parser.parse_args()
    results = rows("memory", None, options.calls)
    with redis_server(options.url) as url:
        store = RedisStore(url, prefix="bench-cache-paths", timeout=2.0)
        results += rows("redis", store, max(1, options.calls // 5))
        store.close()
    for name, count in results:
        print(f"{name:20} {count:8,.0f} bytecodes a call")


if __name__ == "__main__":
    main()
