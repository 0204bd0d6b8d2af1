"""Per-decision latency of a shared rate limit: meshlite's RedisStore against limits.

Both limiters decide in Redis, so each decision is dominated by one round trip. The
benchmark measures, in one run and interleaved (median of several rounds):

- ``PING``: one bare redis-py round trip, the floor of any Redis-backed decision;
- meshlite: a call through ``ml.RateLimit(store=RedisStore(...))`` (GCRA, one
  ``EVALSHA``), the called function included;
- limits: ``MovingWindowRateLimiter(RedisStorage(...)).hit(item)`` then the same
  function (the moving window, one ``EVALSHA`` too).

The ratio is meshlite's time per decision over the limits library's; the target is
at most 1.0x. Both limits are set high enough never to refuse, so every decision
takes the same (admitting) path. A redis-server is started on a free loopback port
unless ``--url`` is given.

Then the load and fault rows of ``benchmarks/redis_load.py``: 256 threads and
1,000 async tasks with zero fallbacks, Redis calls per admitted decision with and
without leasing, failover on a hung Redis and the return to shared mode, and
decisions/s on a 3-primary cluster (skipped with ``--url``, or without redis-cli).

    .venv/bin/python benchmarks/redis_store.py            # about a minute
    .venv/bin/python benchmarks/redis_store.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import redis_load
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

import meshlite as ml
from meshlite._console import render_table
from meshlite._timing import measure_async, measure_sync
from meshlite.state import RedisStore

TARGET = 1.0
RATE = 10_000_000  # per second: never reached, so every decision admits


def work(x: int) -> int:
    return x + 1


async def awork(x: int) -> int:
    return x + 1


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """``url``, or a throwaway redis-server on a free loopback port."""
    if url is not None:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server), "
                 "or pass --url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", tmp],
                                stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(500):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.01)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


def sync_rows(url: str, calls: int) -> list[tuple[str, float, float, float]]:
    store = RedisStore(url, prefix="bench", timeout=1.0)
    ours = ml.RateLimit(rate=RATE, store=store, name="sync", mode="reject")(work)
    moving = MovingWindowRateLimiter(RedisStorage(url, key_prefix="bench-limits"))
    item = RateLimitItemPerSecond(RATE)

    def theirs() -> int:
        if not moving.hit(item, "sync"):
            raise RuntimeError("limits refused a call")
        return work(1)

    ping = redis.Redis.from_url(url)
    r = measure_sync({"ping": ping.ping, "meshlite": lambda: ours(1), "limits": theirs}, calls)
    store.close()
    ping.close()
    return [("sync: RateLimit(store=RedisStore) vs limits MovingWindow (redis-py)",
             r["meshlite"], r["limits"], r["ping"])]


def async_rows(url: str, calls: int) -> list[tuple[str, float, float, float]]:
    store = RedisStore(url, prefix="bench", timeout=1.0)
    ours = ml.RateLimit(rate=RATE, store=store, name="async", mode="reject")(awork)
    moving = AsyncMovingWindow(AsyncRedisStorage(url, implementation="redispy",
                                                 key_prefix="bench-limits"))
    item = RateLimitItemPerSecond(RATE)

    async def theirs() -> int:
        if not await moving.hit(item, "async"):
            raise RuntimeError("limits refused a call")
        return await awork(1)

    pings: dict[int, redis.asyncio.Redis] = {}

    async def ping() -> object:
        # One client per event loop: measure_async runs its own loop.
        loop = id(asyncio.get_running_loop())
        client = pings.get(loop)
        if client is None:
            client = pings[loop] = redis.asyncio.Redis.from_url(url)
        return await client.ping()

    r = measure_async({"ping": ping, "meshlite": lambda: ours(1), "limits": theirs}, calls)
    return [("async: RateLimit(store=RedisStore) vs limits MovingWindow (redis.asyncio)",
             r["meshlite"], r["limits"], r["ping"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing Redis (default: start redis-server)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    calls = 300 if args.quick else 3000
    seconds = 0.5 if args.quick else 5.0
    with redis_server(args.url) as url:
        rows = sync_rows(url, calls) + async_rows(url, calls)
        load = [redis_load.threads_row(url, seconds), redis_load.tasks_row(url, seconds),
                redis_load.calls_per_admitted(url, min(seconds, 2.0), 1),
                redis_load.calls_per_admitted(url, min(seconds, 2.0), 16)]
        load += redis_load.registry_rows(url, 200 if args.quick else 1000,
                                         20 if args.quick else 100)
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if args.url is None and binary is not None:
        load += redis_load.failover_rows(binary, redis_load._cluster_port())
        if cli is not None:
            load.append(redis_load.cluster_row(binary, cli, min(seconds, 2.0)))
    table, ok = [], True
    for name, ours, theirs, ping in rows:
        ratio = ours / theirs
        ok = ok and ratio <= TARGET
        table.append((name, f"{ours / 1000:.1f}", f"{theirs / 1000:.1f}", f"{ping / 1000:.1f}",
                      f"{ratio:.2f}x", f"<= {TARGET:.1f}x", "ok" if ratio <= TARGET else "SLOW"))
    print(render_table(("decision", "meshlite us", "limits us", "PING us", "ratio", "target",
                        ""), table))
    print()
    print(render_table(("load / fault", "result", "note"), load))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
