"""Per-call cost of recording metrics: ``mesh.call_sync`` (and ``mesh.call``) on a
mesh with metrics on against the same mesh with ``metrics=False``, and a pipeline
with the ``ml.Metrics`` policy against the same pipeline without it. A peer row
records the same with the OpenTelemetry SDK (a histogram of latencies, an
up-down counter of calls in flight, a counter of errors) in a policy of its own.

Both meshes have one service with two backends and the same pipeline; the two are
measured interleaved over several rounds (median per candidate), so a noisy
neighbour slows both alike. The difference is what metrics add to a call: the call
run through its series (``_recording.recorded``: counted in flight while it runs, two
clock reads around it, and an append of the latency, counted into the
histogram in batches); per attempt an integer comparison (the endpoint counts its
attempts' latencies from the reservoir it keeps anyway, in batches). The
``Metrics`` policy adds the same plus finding its series by (service, operation).
The target is at most 1 us (1000 ns).

The figure is the thread's CPU time (``time.thread_time_ns``), which a busy machine
disturbs far less than wall time. Where objects land in memory moves such a small
difference by tens of nanoseconds from one process to the next, so the whole
measurement runs in several fresh processes and the table gives, per row, the
median over them and the lowest and highest. A calibration row gives the cost of an
empty Python call and of ``time.monotonic()`` on this machine, to compare figures
across machines.

    .venv/bin/python benchmarks/metrics.py            # about two minutes
    .venv/bin/python benchmarks/metrics.py --quick    # a smoke run
    .venv/bin/python benchmarks/metrics.py --opcodes  # bytecodes of a call, by function
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import meshlite as ml
from meshlite._context import CallContext

TARGET_NS = 1000.0


def work(backend: object, x: int) -> int:
    return x + 1


async def awork(backend: object, x: int) -> int:
    return x + 1


def measure_cpu(candidates: Mapping[str, Callable[[], object]], calls: int,
                rounds: int) -> dict[str, float]:
    """Median thread CPU nanoseconds per call of each candidate, interleaved."""
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


class OtelMetrics(ml.Policy):
    """The peer: what a team would write with the OpenTelemetry SDK to record what
    ``ml.Metrics`` records (latency histogram, calls in flight, errors by type)."""

    kind = "otel_metrics"

    def __init__(self) -> None:
        super().__init__()
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        self.reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[self.reader]).get_meter("benchmark")
        self.duration = meter.create_histogram("operation.duration", unit="s")
        self.in_flight = meter.create_up_down_counter("operation.in_flight")
        self.errors = meter.create_counter("operation.errors")

    def wrap(self, call_next: Callable[[CallContext], Any]) -> Callable[[CallContext], Any]:
        record, add, errors, monotonic = (self.duration.record, self.in_flight.add,
                                          self.errors.add, time.monotonic)

        def handler(ctx: CallContext) -> Any:
            attributes = {"service": ctx.service or "", "operation": ctx.operation}
            add(1, attributes)
            start = monotonic()
            try:
                return call_next(ctx)
            except BaseException as error:
                errors(1, {**attributes, "error": type(error).__name__})
                raise
            finally:
                record(monotonic() - start, attributes)
                add(-1, attributes)

        return handler

    def awrap(self, call_next: Any) -> Any:
        record, add, errors, monotonic = (self.duration.record, self.in_flight.add,
                                          self.errors.add, time.monotonic)

        async def handler(ctx: CallContext) -> Any:
            attributes = {"service": ctx.service or "", "operation": ctx.operation}
            add(1, attributes)
            start = monotonic()
            try:
                return await call_next(ctx)
            except BaseException as error:
                errors(1, {**attributes, "error": type(error).__name__})
                raise
            finally:
                record(monotonic() - start, attributes)
                add(-1, attributes)

        return handler


def _mesh(metrics: bool, pipeline: Callable[[], ml.Pipeline | None]) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", ["127.0.0.1", "127.0.0.2"], pipeline=pipeline())],
                   metrics=metrics)


PIPELINES: dict[str, Callable[[], ml.Pipeline | None]] = {
    "no policies": ml.Pipeline,
    "default (Retry)": lambda: None,
}

Row = dict[str, float]  # "off", "on": thread CPU ns per call


def measure(calls: int, rounds: int) -> dict[str, Row]:
    """Every row of the table, measured in this process."""
    rows: dict[str, Row] = {}
    for label, pipeline in PIPELINES.items():
        off, on = _mesh(False, pipeline), _mesh(True, pipeline)
        rows[f"mesh.call_sync, {label}"] = measure_cpu(
            {"off": lambda m=off: m.call_sync("users", work, 1),
             "on": lambda m=on: m.call_sync("users", work, 1)}, calls, rounds)
        rows[f"mesh.call (async), {label}"] = measure_cpu_async(
            {"off": lambda m=off: m.call("users", awork, 1),
             "on": lambda m=on: m.call("users", awork, 1)}, calls, rounds)
    for label, extra in (("no other policy", ()), ("Retry", (ml.Retry(),))):
        bare, metered = ml.Pipeline(*extra), ml.Pipeline(ml.Metrics(), *extra)
        rows[f"Pipeline.call, ml.Metrics, {label}"] = measure_cpu(
            {"off": lambda p=bare: p.call(work, None, 1),
             "on": lambda p=metered: p.call(work, None, 1)}, calls, rounds)
        rows[f"Pipeline.acall, ml.Metrics, {label}"] = measure_cpu_async(
            {"off": lambda p=bare: p.acall(awork, None, 1),
             "on": lambda p=metered: p.acall(awork, None, 1)}, calls, rounds)
    bare, peer = ml.Pipeline(), ml.Pipeline(OtelMetrics())
    rows["Pipeline.call, OpenTelemetry SDK (peer)"] = measure_cpu(
        {"off": lambda p=bare: p.call(work, None, 1),
         "on": lambda p=peer: p.call(work, None, 1)}, calls, rounds)
    rows["Pipeline.acall, OpenTelemetry SDK (peer)"] = measure_cpu_async(
        {"off": lambda p=bare: p.acall(awork, None, 1),
         "on": lambda p=peer: p.acall(awork, None, 1)}, calls, rounds)

    def empty() -> None:
        return None

    rows["calibration"] = measure_cpu({"empty": empty, "monotonic": time.monotonic},
                                      calls * 10, rounds)
    return rows


def _spawn(calls: int, rounds: int) -> dict[str, Row]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, __file__, "--child", str(calls), str(rounds)],
                         check=True, capture_output=True, text=True, env=env).stdout
    rows: dict[str, Row] = json.loads(out)
    return rows


def report(runs: list[dict[str, Row]]) -> bool:
    """Print the table (medians over the runs) and say whether the target is met."""
    print(f"thread CPU ns per call; median of {len(runs)} processes "
          f"(lowest-highest added); target <= {TARGET_NS:.0f} ns added")
    print(f"{'call':<44}{'off':>8}{'on':>8}{'added':>8}{'range':>13}")
    ok = True
    recorded: dict[str, float] = {}
    for name in runs[0]:
        if name == "calibration":
            continue
        added = [r[name]["on"] - r[name]["off"] for r in runs]
        off = statistics.median(r[name]["off"] for r in runs)
        on = statistics.median(r[name]["on"] for r in runs)
        median = recorded[name] = statistics.median(added)
        peer = "(peer)" in name
        verdict = "" if peer else ("ok" if median <= TARGET_NS else "OVER")
        ok &= peer or median <= TARGET_NS
        spread = f"{min(added):.0f}-{max(added):.0f}"
        print(f"{name:<44}{off:>8.0f}{on:>8.0f}{median:>8.0f}{spread:>13}  {verdict}")
    for style in ("call", "acall"):
        ours = recorded[f"Pipeline.{style}, ml.Metrics, no other policy"]
        theirs = recorded[f"Pipeline.{style}, OpenTelemetry SDK (peer)"]
        print(f"Pipeline.{style}: the OpenTelemetry SDK recorder adds {theirs / ours:.1f}x "
              "what ml.Metrics adds")
    cal = runs[0]["calibration"]
    print(f"calibration (cpu): empty Python call {cal['empty']:.0f} ns, "
          f"time.monotonic() {cal['monotonic']:.0f} ns")
    return ok


def opcodes(calls: int = 300) -> None:
    """Print the Python bytecodes one call runs, by function, for two rows with
    metrics on (``--opcodes``; see ``_bytecodes.py``)."""
    import asyncio

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _bytecodes import counting, report

    mesh, metered = _mesh(True, ml.Pipeline), ml.Pipeline(ml.Metrics())

    def sync_calls(n: int) -> None:
        for _ in range(n):
            mesh.call_sync("users", work, 1)

    async def acalls(n: int) -> None:
        for _ in range(n):
            await metered.acall(awork, None, 1)

    rows: dict[str, Callable[[int], None]] = {
        "mesh.call_sync, no policies": sync_calls,
        "Pipeline.acall, ml.Metrics, no other policy": lambda n: asyncio.run(acalls(n)),
    }
    for name, run in rows.items():
        run(2000)  # warm-up
        with counting() as counts:
            run(calls)
        report(name, counts, calls, "call", 12)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(int(sys.argv[2]), int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few calls: a smoke run")
    parser.add_argument("--processes", type=int, default=5,
                        help="fresh processes to measure in (default 5)")
    parser.add_argument("--opcodes", action="store_true",
                        help="count the Python bytecodes of a call by function instead")
    args = parser.parse_args()
    if args.opcodes:
        opcodes()
        return
    calls, rounds, processes = (300, 3, 1) if args.quick else (3000, 15, args.processes)
    ok = report([_spawn(calls, rounds) for _ in range(max(1, processes))])
    print("target met (cpu)" if ok else "target missed (cpu)")


if __name__ == "__main__":
    main()
