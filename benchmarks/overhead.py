"""Per-call overhead of meshlite policies against the libraries people stack by hand.

Each comparison builds the same policy set twice, with meshlite and hand-stacked
with its peers, and measures both side by side in one run (interleaved rounds,
median per candidate), on the same trivial function. Overhead is the time per call
minus a direct call; the ratio is meshlite's overhead over the peers' (or, for
cache hits and the rate limiter, meshlite's whole call over the peer's).

    .venv/bin/python benchmarks/overhead.py            # about a minute
    .venv/bin/python benchmarks/overhead.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiolimiter
import cachetools
import pybreaker
import tenacity
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import meshlite as ml
from meshlite._console import render_table
from meshlite._timing import measure_async, measure_sync


def work(x: int) -> int:
    return x + 1


async def awork(x: int) -> int:
    return x + 1


@dataclass
class Row:
    name: str
    meshlite_ns: float
    peer_ns: float
    ratio: float
    target: float
    basis: str

    @property
    def ok(self) -> bool:
        return self.ratio <= self.target


def sync_retry_breaker(calls: int) -> Row:
    stacked = tenacity.retry(stop=tenacity.stop_after_attempt(3), reraise=True)(
        pybreaker.CircuitBreaker(fail_max=20, reset_timeout=30)(work)
    )
    ours = ml.Pipeline(ml.Retry(attempts=3), ml.CircuitBreaker())(work)
    r = measure_sync(
        {"direct": lambda: work(1), "meshlite": lambda: ours(1), "peer": lambda: stacked(1)},
        calls,
    )
    mo, po = r["meshlite"] - r["direct"], r["peer"] - r["direct"]
    return Row("sync Retry + CircuitBreaker vs tenacity Retrying + pybreaker", mo, po, mo / po,
               0.15, "overhead")


def async_retry_rate_limit(calls: int) -> Row:
    limiter = aiolimiter.AsyncLimiter(1e12, 1)

    @tenacity.retry(stop=tenacity.stop_after_attempt(3), reraise=True)
    async def stacked(x: int) -> int:
        async with limiter:
            return await awork(x)

    ours = ml.Pipeline(ml.Retry(attempts=3), ml.RateLimit(rate=1e12))(awork)
    r = measure_async(
        {"direct": lambda: awork(1), "meshlite": lambda: ours(1), "peer": lambda: stacked(1)},
        calls,
    )
    mo, po = r["meshlite"] - r["direct"], r["peer"] - r["direct"]
    return Row("async Retry + RateLimit vs tenacity AsyncRetrying + aiolimiter", mo, po, mo / po,
               0.15, "overhead")


class _DiscardExporter(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def trace_span(calls: int) -> Row:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_DiscardExporter(), max_queue_size=1 << 16))
    tracer = provider.get_tracer("bench")

    def bare(x: int) -> int:
        with tracer.start_as_current_span("work"):
            return work(x)

    ours = ml.Pipeline(ml.Trace(tracer_provider=provider))(work)
    r = measure_sync(
        {"direct": lambda: work(1), "meshlite": lambda: ours(1), "peer": lambda: bare(1)},
        calls // 10,
    )
    provider.shutdown()
    mo, po = r["meshlite"] - r["direct"], r["peer"] - r["direct"]
    return Row("Trace vs one bare OpenTelemetry SDK span", mo, po, mo / po, 1.2, "overhead")


def cache_hit(calls: int) -> Row:
    peer = cachetools.cached(cachetools.TTLCache(maxsize=1024, ttl=60))(work)
    ours = ml.Pipeline(ml.Cache(ttl=60.0, maxsize=1024))(work)
    r = measure_sync({"meshlite": lambda: ours(1), "peer": lambda: peer(1)}, calls)
    return Row("Cache hit vs cachetools.cached(TTLCache)", r["meshlite"], r["peer"],
               r["meshlite"] / r["peer"], 1.5, "whole call")


def admitted_rate_limit(calls: int) -> Row:
    limiter = aiolimiter.AsyncLimiter(1e12, 1)

    async def peer(x: int) -> int:
        async with limiter:
            return await awork(x)

    ours = ml.Pipeline(ml.RateLimit(rate=1e12))(awork)
    r = measure_async({"meshlite": lambda: ours(1), "peer": lambda: peer(1)}, calls)
    return Row("admitted async RateLimit call vs aiolimiter", r["meshlite"], r["peer"],
               r["meshlite"] / r["peer"], 1.0, "whole call")


async def _cpu_per_admitted(acquire: Callable[[], object], tasks: int, admitted: int) -> float:
    """CPU seconds per admitted call with ``tasks`` tasks all waiting on one limiter."""
    done = 0
    stop = asyncio.Event()

    async def waiter() -> None:
        nonlocal done
        while not stop.is_set():
            await acquire()  # type: ignore[misc]
            done += 1
            if done >= admitted:
                stop.set()

    cpu = time.process_time()
    workers = [asyncio.create_task(waiter()) for _ in range(tasks)]
    await stop.wait()
    used = time.process_time() - cpu
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return used / done


def waiting_rate_limit(admitted: int) -> Row:
    rate = 2_000.0
    ours_pipeline = ml.Pipeline(ml.RateLimit(rate=rate, burst=1))

    async def noop() -> None:
        return None

    async def run() -> tuple[float, float]:
        # Equal bursts of one call on both sides: every admission is a wait.
        limiter = aiolimiter.AsyncLimiter(1, 1 / rate)

        async def peer() -> None:
            async with limiter:
                return

        ours_cpu = await _cpu_per_admitted(lambda: ours_pipeline.acall(noop), 1000, admitted)
        peer_cpu = await _cpu_per_admitted(peer, 1000, admitted)
        return ours_cpu, peer_cpu

    ours_cpu, peer_cpu = asyncio.run(run())
    return Row("CPU per admitted call, 1,000 waiting tasks, vs aiolimiter", ours_cpu * 1e9,
               peer_cpu * 1e9, ours_cpu / peer_cpu, 1.0, "CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 20_000 if args.quick else 100_000
    rows = [
        sync_retry_breaker(calls),
        async_retry_rate_limit(calls // 2),
        trace_span(calls),
        cache_hit(calls * 2),
        admitted_rate_limit(calls),
        waiting_rate_limit(1_000 if args.quick else 4_000),
    ]
    table = [
        (r.name, f"{r.meshlite_ns:,.0f}", f"{r.peer_ns:,.0f}", r.basis, f"{r.ratio:.2f}x",
         f"<= {r.target}x", "ok" if r.ok else "MISSED")
        for r in rows
    ]
    print(render_table(("comparison", "meshlite ns", "peer ns", "basis", "ratio", "target",
                        ""), table))


if __name__ == "__main__":
    main()
