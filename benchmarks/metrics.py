"""Per-call cost of recording metrics: ``mesh.call_sync`` (and ``mesh.call``) on a
mesh with metrics on against the same mesh with ``metrics=False``, and a pipeline
with the ``ml.Metrics`` policy against the same pipeline without it.

Both meshes have one service with two backends and the same pipeline; the two are
measured interleaved over several rounds (median per candidate), so a noisy
neighbour slows both alike. The difference is what metrics add to a call: two
clock reads around the call and an append to the service's pending latencies
(counted into the histogram in batches), and per attempt an integer comparison
(the endpoint counts its attempts' latencies from the reservoir it keeps anyway,
in batches). The ``Metrics`` policy adds the same plus finding its series by
(service, operation) and its calls-in-flight list. The target is at most 1 us
(1000 ns).

Two figures per row: wall time (``meshlite._timing.measure_sync`` /
``measure_async``, what a caller waits) and the thread's CPU time (the same
interleaving, timed with ``time.thread_time_ns``), which a busy machine disturbs
far less. A calibration row gives the cost of an empty Python function call and of
``time.monotonic()`` on this machine, to compare figures across machines.

    .venv/bin/python benchmarks/metrics.py            # about a minute
    .venv/bin/python benchmarks/metrics.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping

import meshlite as ml
from meshlite._timing import measure_async, measure_sync

TARGET_NS = 1000.0


def work(backend: object, x: int) -> int:
    return x + 1


async def awork(backend: object, x: int) -> int:
    return x + 1


def measure_cpu(candidates: Mapping[str, Callable[[], object]], calls: int,
                rounds: int) -> dict[str, float]:
    """Like ``measure_sync`` but timed on the thread's CPU clock."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        for _ in range(max(1, calls // 10)):
            fn()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in candidates.items():
                start = time.thread_time_ns()
                for _ in range(calls):
                    fn()
                samples[name].append((time.thread_time_ns() - start) / calls)
    finally:
        gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}


def measure_cpu_async(candidates: Mapping[str, Callable[[], Awaitable[object]]],
                      calls: int, rounds: int) -> dict[str, float]:
    """Like :func:`measure_cpu`, awaiting each call on one event loop."""

    async def run() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        for fn in candidates.values():
            for _ in range(max(1, calls // 10)):
                await fn()
        gc.disable()
        try:
            for _ in range(rounds):
                for name, fn in candidates.items():
                    start = time.thread_time_ns()
                    for _ in range(calls):
                        await fn()
                    samples[name].append((time.thread_time_ns() - start) / calls)
        finally:
            gc.enable()
        return {name: statistics.median(s) for name, s in samples.items()}

    return asyncio.run(run())


def _mesh(metrics: bool, pipeline: Callable[[], ml.Pipeline | None]) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", ["127.0.0.1", "127.0.0.2"], pipeline=pipeline())],
                   metrics=metrics)


PIPELINES: dict[str, Callable[[], ml.Pipeline | None]] = {
    "no policies": ml.Pipeline,
    "default (Retry)": lambda: None,
}


def _row(label: str, wall: Mapping[str, float], cpu: Mapping[str, float] | None) -> bool:
    added = wall["on"] - wall["off"]
    cells = f"{label:<32}{wall['off']:>9.0f}{wall['on']:>9.0f}{added:>9.0f}"
    if cpu is not None:
        cpu_added = cpu["on"] - cpu["off"]
        cells += f"{cpu['off']:>10.0f}{cpu['on']:>9.0f}{cpu_added:>9.0f}"
        added = cpu_added
    print(f"{cells}  {'ok' if added <= TARGET_NS else 'OVER'}")
    return added <= TARGET_NS


def run(calls: int, rounds: int) -> bool:
    print(f"{'':<32}{'wall ns':^27}{'cpu ns':^28}")
    print(f"{'call':<32}{'off':>9}{'on':>9}{'added':>9}{'off':>10}{'on':>9}{'added':>9}"
          f"  target <= {TARGET_NS:.0f} ns added")
    ok = True
    for label, pipeline in PIPELINES.items():
        off, on = _mesh(False, pipeline), _mesh(True, pipeline)
        sync = {"off": lambda m=off: m.call_sync("users", work, 1),
                "on": lambda m=on: m.call_sync("users", work, 1)}
        ok &= _row(f"call_sync, {label}", measure_sync(sync, calls, rounds),
                   measure_cpu(sync, calls, rounds))
        aio = {"off": lambda m=off: m.call("users", awork, 1),
               "on": lambda m=on: m.call("users", awork, 1)}
        ok &= _row(f"call (async), {label}", measure_async(aio, calls, rounds),
                   measure_cpu_async(aio, calls, rounds))

    for label, extra in (("no other policy", ()), ("Retry", (ml.Retry(),))):
        bare, metered = ml.Pipeline(*extra), ml.Pipeline(ml.Metrics(), *extra)
        sync = {"off": lambda p=bare: p.call(work, None, 1),
                "on": lambda p=metered: p.call(work, None, 1)}
        ok &= _row(f"Pipeline.call, {label}", measure_sync(sync, calls, rounds),
                   measure_cpu(sync, calls, rounds))
        aio = {"off": lambda p=bare: p.acall(awork, None, 1),
               "on": lambda p=metered: p.acall(awork, None, 1)}
        ok &= _row(f"Pipeline.acall, {label}", measure_async(aio, calls, rounds),
                   measure_cpu_async(aio, calls, rounds))

    def empty() -> None:
        return None

    monotonic = time.monotonic
    cal = measure_cpu({"empty": empty, "monotonic": monotonic}, calls * 10, rounds)
    print(f"calibration (cpu): empty Python call {cal['empty']:.0f} ns, "
          f"time.monotonic() {cal['monotonic']:.0f} ns")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few calls: a smoke run")
    args = parser.parse_args()
    calls, rounds = (300, 3) if args.quick else (4000, 15)
    ok = run(calls, rounds)
    print("target met (cpu)" if ok else "target missed (cpu)")


if __name__ == "__main__":
    main()
