"""Four real processes (multiprocessing, spawn) sharing one Redis.

The workers live in ``mp_workers`` so that spawned processes can import them; they
meet through Redis (see its docstring). One pool of four processes serves every
test of the module, so each pays the start-up once.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import Any

import mp_workers
import pytest
import redis
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore

PROCESSES = 4


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as p:
        yield p


def wait_for(client: redis.Redis, key: str, value: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while int(client.get(key) or 0) < value:
        assert time.monotonic() < deadline, f"{key} never reached {value}"
        time.sleep(0.01)


def go(client: redis.Redis, prefix: str) -> float:
    """Release the processes once all are ready; returns when they were released."""
    wait_for(client, f"{prefix}:ready", PROCESSES)
    started = time.monotonic()
    client.rpush(f"{prefix}:go", *range(PROCESSES))
    return started


def results(job: AsyncResult[Any]) -> list[Any]:
    return list(job.get(timeout=90))


def test_one_rate_limit_across_processes(pool: Pool, raw: redis.Redis,
                                         redis_server: RedisServer, prefix: str) -> None:
    seconds = 2.0  # a process slowed by a loaded machine still wins some of 100 tokens
    job = pool.starmap_async(mp_workers.rate_limit,
                             [(redis_server.url, prefix, seconds)] * PROCESSES)
    started = go(raw, prefix)
    counts = results(job)
    elapsed = time.monotonic() - started
    total = sum(counts)
    # GCRA's bound, for the sum of the four: burst + rate * t over any t seconds.
    assert total <= 5 + 50.0 * elapsed
    assert total >= 5 + 50.0 * seconds * 0.5  # and the limit was really reached
    assert all(n > 0 for n in counts)


def test_one_breaker_across_processes(pool: Pool, raw: redis.Redis,
                                      redis_server: RedisServer, prefix: str) -> None:
    job = pool.starmap_async(mp_workers.breaker_trial,
                             [(redis_server.url, prefix, i) for i in range(PROCESSES)])
    go(raw, prefix)
    wait_for(raw, f"{prefix}:checked", PROCESSES)  # all saw it open
    raw.hset(f"{prefix}:cb:{{mp}}", "ou", 0)  # the open period is over
    raw.rpush(f"{prefix}:trials", *range(PROCESSES))
    wait_for(raw, f"{prefix}:rejected", 1)  # three trials run, the fourth is turned away
    raw.rpush(f"{prefix}:release", *range(PROCESSES))
    outcomes = results(job)
    assert all(o.startswith("circuit 'mp' is open after 5 of 5 calls failed") for o in outcomes)
    after = [o.split(" | ")[1] for o in outcomes]
    assert after.count("admitted") == 3
    assert [o for o in after if o != "admitted"] == [
        "circuit 'mp' is half-open and all 3 trial calls are taken; "
        "retry once they have finished"]
    store = RedisStore(redis_server.url, prefix=prefix)
    cb = ml.CircuitBreaker(name="mp", window=10, min_calls=5, half_open_calls=3, store=store)
    assert cb.state == "closed"
    store.close()


def test_one_cache_across_processes(pool: Pool, raw: redis.Redis,
                                    redis_server: RedisServer, prefix: str) -> None:
    job = pool.starmap_async(mp_workers.cached, [(redis_server.url, prefix)] * PROCESSES)
    go(raw, prefix)
    assert results(job) == [{"x": 7, "pid": 1}] * PROCESSES
    assert int(raw.get(f"{prefix}:runs") or 0) == 1


def decisions(client: redis.Redis) -> int:
    """Rate-limit decisions the Redis server has made (scripts run)."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def wait_for_files(directory: Path, suffix: str, count: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while len(list(directory.glob(f"*.{suffix}"))) < count:
        assert time.monotonic() < deadline, f"{count} workers never reported {suffix}"
        time.sleep(0.01)


def wait_until(predicate: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_redis_killed_and_restarted_mid_run(pool: Pool, fresh_server: RedisServer,
                                            prefix: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(fresh_server.url)
    job = pool.starmap_async(mp_workers.through_an_outage,
                             [(fresh_server.url, prefix, str(tmp_path))] * PROCESSES)
    go(client, prefix)
    wait_until(lambda: decisions(client) >= 10 * PROCESSES, "decisions on Redis")
    client.close()
    fresh_server.kill()
    wait_for_files(tmp_path, "StoreUnavailable", PROCESSES)  # every worker noticed
    fresh_server.start()
    wait_for_files(tmp_path, "StoreRecovered", PROCESSES)  # and went back to Redis
    check = redis.Redis.from_url(fresh_server.url)
    wait_until(lambda: decisions(check) >= PROCESSES, "decisions on the restarted Redis")
    (tmp_path / "stop").touch()
    reports = results(job)
    for report in reports:
        o = report["outcomes"]
        assert o["errors"] == 0, report
        assert o["ok"] + o["rejected"] == o["attempts"] > 0  # every call answered
        events = report["events"]
        assert "StoreFallback" in events  # fell back while Redis was gone
        assert events.index("StoreUnavailable") < events.index("StoreRecovered")
        assert report["available"], report  # and went back to Redis
    assert decisions(check) > 0  # counted since the restart: decisions reached it
    check.close()
