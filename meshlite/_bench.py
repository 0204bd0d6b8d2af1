"""`meshlite bench`: meshlite's own per-call overhead on this machine (no peers needed;
benchmarks/overhead.py in the repository compares against tenacity, pybreaker,
aiolimiter, cachetools and the OpenTelemetry SDK)."""

from __future__ import annotations

from typing import TextIO

from ._console import render_table
from ._pipeline import Pipeline
from ._timing import measure_async, measure_sync
from .policies._cache import Cache
from .policies._circuit_breaker import CircuitBreaker
from .policies._rate_limit import RateLimit
from .policies._retry import Retry
from .policies._timeout import Timeout

__all__ = ["run_bench"]


def _work(x: int) -> int:
    return x + 1


async def _awork(x: int) -> int:
    return x + 1


def run_bench(out: TextIO, calls: int = 200_000) -> dict[str, float]:
    """Measure and print ns per call over a direct call; returns the overheads."""
    retry_breaker = Pipeline(Retry(attempts=3), CircuitBreaker())(_work)
    cached = Pipeline(Cache(ttl=60.0))(_work)
    sync = measure_sync(
        {
            "direct call": lambda: _work(1),
            "Retry + CircuitBreaker": lambda: retry_breaker(1),
            "Cache hit": lambda: cached(1),
        },
        calls,
    )
    full = Pipeline(Timeout(5.0), Retry(attempts=3), CircuitBreaker(), RateLimit(rate=1e9))(_awork)
    asynchronous = measure_async(
        {
            "direct await": lambda: _awork(1),
            "Timeout + Retry + Breaker + RateLimit": lambda: full(1),
        },
        calls // 4,
    )
    rows = []
    overheads: dict[str, float] = {}
    for results, base in ((sync, "direct call"), (asynchronous, "direct await")):
        for name, ns in results.items():
            overhead = ns - results[base]
            if name != base:
                overheads[name] = overhead
            rows.append((name, f"{ns:,.0f}", "" if name == base else f"{overhead:,.0f}"))
    out.write(render_table(("pipeline", "ns per call", "overhead ns"), rows) + "\n")
    return overheads
