"""Soak: a million calls through a full pipeline, each with its own key, and the
process's resident memory must stay flat.

One mesh (metrics on, the default) with one service of three in-process backends
(string addresses, no HTTP); its pipeline is Trace, Fallback, Timeout, Retry,
CircuitBreaker, a keyed RateLimit and a keyed Cache, so the rate limiter's key table
and the cache see a million distinct keys and must keep evicting. One call in a
hundred fails once (Retry retries it on another backend). Resident memory (VmRSS of
/proc/self/status) is read after a warm-up that fills every bounded table, then
every 100,000 calls; the growth from the warm-up to the end must stay under the
limit (10 MB).

    .venv/bin/python benchmarks/soak.py                    # 1,000,000 calls, 1-3 minutes
    .venv/bin/python benchmarks/soak.py --calls 200000     # a shorter run

Exits with status 1 when the growth is over the limit.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

import meshlite as ml
from meshlite._console import render_table
from meshlite.observability import render

MAX_KEYS = 10_000  # RateLimit(max_keys=...) and Cache(maxsize=...)
WARM_UP = 100_000  # calls before the baseline: ten times every bounded table's size
REPORT_EVERY = 100_000
LIMIT_MB = 10.0
FAIL_EVERY = 100  # one key in FAIL_EVERY fails on its first attempt


def rss_mb() -> float:
    """Resident set size of this process, in MB (VmRSS, /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def build() -> ml.Mesh:
    cache = ml.Cache(ttl=300.0, maxsize=MAX_KEYS, key=lambda key: key)
    limit = ml.RateLimit(rate=1_000.0, per=1.0, burst=10, mode="reject",
                         key=lambda key: key, max_keys=MAX_KEYS)
    pipeline = ml.Pipeline(
        ml.Trace(),
        ml.Fallback(value=None, on=(ml.CircuitOpenError, ml.RateLimitedError)),
        ml.Timeout(5.0),
        ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0)),
        ml.CircuitBreaker(failure_rate=0.5, window=100, min_calls=20, open_seconds=1.0),
        limit,
        cache,
    )
    service = ml.Service("users", ["backend-a", "backend-b", "backend-c"],
                         balancer="round_robin", pipeline=pipeline)
    return ml.Mesh([service])


def backend_call() -> Callable[..., Any]:
    failed: set[int] = set()

    def call(backend: ml.Backend, key: int) -> int:
        # Fail once for one key in FAIL_EVERY: retried, counted by the breaker and
        # outlier detection, never enough to open or eject.
        if key % FAIL_EVERY == 0 and key not in failed:
            failed.add(key)
            raise ConnectionError(f"{backend.address}: transient failure for {key}")
        failed.discard(key)
        return key

    return call


def metric(text: str, name: str) -> float:
    """The sum of every sample of metric ``name`` in Prometheus text."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + "{", name + " ")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()
    calls = max(args.calls, WARM_UP + REPORT_EVERY)
    mesh = build()
    call, fn = mesh.call_sync, backend_call()
    gc.collect()
    rows: list[list[object]] = [["0", f"{rss_mb():.2f}", "", "0", ""]]
    start = time.perf_counter()
    baseline = 0.0
    for key in range(calls):
        if call("users", fn, key) != key:
            raise AssertionError(f"call {key} answered wrong")
        done = key + 1
        if done in (WARM_UP, calls) or (done > WARM_UP and done % REPORT_EVERY == 0):
            gc.collect()
            now = rss_mb()
            if done == WARM_UP:
                baseline = now
            elapsed = time.perf_counter() - start
            rows.append([f"{done:,}", f"{now:.2f}", f"{now - baseline:+.2f}",
                         f"{elapsed:.0f}", f"{elapsed / done * 1e6:.1f}"])
    growth = rss_mb() - baseline
    text = render(mesh.metrics)
    print(render_table(["calls", "RSS MB", "growth MB", "seconds", "us/call"], rows))
    print()
    print(f"distinct keys: {calls:,} (cache maxsize and rate-limit max_keys {MAX_KEYS:,})")
    print(f"metrics: requests {metric(text, 'meshlite_requests_total'):,.0f}, backend "
          f"attempts {metric(text, 'meshlite_backend_requests_total'):,.0f}, backend errors "
          f"{metric(text, 'meshlite_backend_errors_total'):,.0f}")
    print(f"RSS growth after warm-up ({WARM_UP:,} calls): {growth:+.2f} MB "
          f"(limit {LIMIT_MB:.0f} MB) on Python {sys.version.split()[0]}")
    return 0 if growth < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
