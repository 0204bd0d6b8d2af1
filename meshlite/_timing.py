"""Measuring per-call cost, shared by `meshlite bench` and benchmarks/.

Candidates are measured interleaved (A, B, C, A, B, C...) over several rounds and
the median of each is kept, so a noisy neighbour on a small machine slows every
candidate alike instead of skewing one of them.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["measure_async", "measure_sync"]


def _loop_sync(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


async def _loop_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        await fn()
    return (time.perf_counter_ns() - start) / calls


def measure_sync(
    candidates: Mapping[str, Callable[[], object]], calls: int, rounds: int = 7
) -> dict[str, float]:
    """Median nanoseconds per call of each candidate, measured interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        _loop_sync(fn, max(1, calls // 10))  # warm up
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in candidates.items():
                samples[name].append(_loop_sync(fn, calls))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}


def measure_async(
    candidates: Mapping[str, Callable[[], Awaitable[object]]], calls: int, rounds: int = 7
) -> dict[str, float]:
    """Like :func:`measure_sync`, awaiting each call on one event loop."""

    async def run() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        for fn in candidates.values():
            await _loop_async(fn, max(1, calls // 10))
        gc.disable()
        try:
            for _ in range(rounds):
                for name, fn in candidates.items():
                    samples[name].append(await _loop_async(fn, calls))
        finally:
            gc.enable()
        return {name: statistics.median(s) for name, s in samples.items()}

    return asyncio.run(run())
