"""Event-loop lag while a large config is reloaded: does traffic stall?

A mesh of 3,000 services (and, separately, a 581-byte YAML alias bomb) is reloaded
with ``await mesh.reload()`` while a ticker task on the same event loop wakes every
millisecond; the longest gap between two ticks beyond the millisecond asked for is
the longest time calls on that loop would have waited. Now: the file is parsed in
a separate process (large, or with YAML anchors), and only the services whose
section changed are validated, built and compiled, on the loop a slice of about
1 ms at a time. For comparison, interleaved: the reload as before (parsed,
validated, built and compiled in a worker thread, every service of the file), and
two controls of the machine itself over the same time: the loop idle, and the loop
busy in 1 ms slices of plain Python (what a slice of work on a loaded machine costs
the ticker, with no reload at all).

    .venv/bin/python benchmarks/reload_lag.py --runs 3
    .venv/bin/python benchmarks/reload_lag.py --services 1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import meshlite as ml
from meshlite.config._apply import prepare
from meshlite.config._load import gc_paused, load_plan
from meshlite.config._watcher import ConfigWatcher

BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi",
                                                                   strict=True)]
    + ["services: {s0: {backends: [http://127.0.0.1:1], metadata: *i}}", ""])


def config(services: int, attempts: int, changed: int | None = None,
           balancer: str | None = None) -> str:
    """``services`` services; the first ``changed`` (default: all) get ``attempts``;
    with ``balancer``, every service has that balancer."""
    lines = ["services:"]
    for i in range(services):
        tries = attempts if changed is None or i < changed else 3
        lines += [f"  s{i}:", f'    backends: ["http://127.0.0.1:{1000 + i % 60000}"]',
                  f"    retry: {{attempts: {tries}}}", "    timeout: 2.0"]
        if balancer is not None:
            lines.append(f"    balancer: {balancer}")
    return "\n".join(lines) + "\n"


SCENARIOS: list[tuple[str, Callable[[int, int], str]]] = [
    ("one service changed", lambda n, v: config(n, v, 1)),
    ("every one's policies changed", lambda n, v: config(n, v)),
    ("every one's routing changed (each replaced)",
     lambda n, v: config(n, 3, balancer=("random", "round_robin")[v % 2])),
]


_longest_turn = [0.0]


def _timed_run(self: asyncio.Handle) -> None:
    start = time.thread_time()
    _handle_run(self)
    _longest_turn[0] = max(_longest_turn[0], time.thread_time() - start)


_handle_run = getattr(asyncio.Handle, "_run")  # noqa: B009 (private: patched to time it)
setattr(asyncio.Handle, "_run", _timed_run)  # noqa: B010


async def lag_during(action: object) -> tuple[float, float, float]:
    """(seconds the action took, the longest tick gap beyond 1 ms, the most CPU time
    one turn of work on the loop took), in seconds. The CPU figure (each callback
    the loop runs, timed with ``time.thread_time``) leaves out the time the thread
    was not running (another process had the CPU, or it waited for the GIL): it is
    the longest the loop's own work held it, whatever the machine does."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    _longest_turn[0] = 0.0
    start = time.perf_counter()
    await action  # type: ignore[misc]
    took = time.perf_counter() - start
    cpu = _longest_turn[0]
    done = True
    await task
    return took, worst, cpu


async def _load_before(self: Any, text: str) -> Any:
    """The reload as before: parsed, validated, built and compiled in a worker thread,
    every service of the file (the GIL shared with the loop all along)."""
    managed = self.managed
    others = managed.others(self.mesh)

    def load() -> Any:
        with gc_paused():
            plan = load_plan(managed.path, environ=managed.environ, profile=managed.profile,
                             text=text, previous=managed.plan, others=others,
                             clock=managed.clock)
            prepare(managed.plan, plan)
            return plan

    return await asyncio.to_thread(load)


async def _idle(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def _busy(seconds: float) -> None:
    """Plain Python on the loop in 1 ms slices, ``seconds`` long."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        stop = time.perf_counter() + 0.001
        while time.perf_counter() < stop:
            pass
        await asyncio.sleep(0)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


async def run(services: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mesh.yaml"
        path.write_text(config(services, 3), encoding="utf-8")
        mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
        async with mesh:
            now = ConfigWatcher._load
            version = 4
            for what, make in SCENARIOS:
                lags: dict[str, list[float]] = {m: [] for m in ("now", "before", "idle",
                                                                "busy", "cpu", "cpu0")}
                took: list[float] = []
                for _ in range(runs):
                    for mode, load in (("now", now), ("before", _load_before)):
                        ConfigWatcher._load = load  # type: ignore[method-assign]
                        version += 1
                        path.write_text(make(services, version), encoding="utf-8")
                        seconds, lag, cpu = await lag_during(mesh.reload())
                        lags[mode].append(lag)
                        lags["cpu" if mode == "now" else "cpu0"].append(cpu)
                        if mode == "now":
                            took.append(seconds)
                    lags["idle"].append((await lag_during(_idle(took[-1])))[1])
                    lags["busy"].append((await lag_during(_busy(took[-1])))[1])
                ConfigWatcher._load = now  # type: ignore[method-assign]
                ratio = statistics.median(lags["now"]) / statistics.median(lags["before"])
                print(f"{services} services, {what}, {runs} reloads each: longest loop "
                      f"stall, median: now {_ms(lags['now'])} (reload took "
                      f"{_ms(took)}; longest turn of the loop in CPU time {_ms(lags['cpu'])}); "
                      f"before {_ms(lags['before'])} ({ratio:.3f}x; loop CPU "
                      f"{_ms(lags['cpu0'])}); controls over as long: loop idle "
                      f"{_ms(lags['idle'])}, loop busy in 1 ms slices {_ms(lags['busy'])}")
            path.write_text(BOMB, encoding="utf-8")
            t, lag, cpu = await lag_during(mesh.reload())
            print(f"{len(BOMB.encode())}-byte alias bomb: rejected in {t * 1000:.0f} ms, "
                  f"longest loop stall {lag * 1000:.1f} ms (loop CPU {cpu * 1000:.1f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    asyncio.run(run(args.services, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
