"""Event-loop lag while a large config is reloaded: does traffic stall?

A mesh of 3,000 services (and, separately, a 581-byte YAML alias bomb) is reloaded
with ``await mesh.reload()`` while a ticker task on the same event loop wakes every
millisecond; the longest gap between two ticks beyond the millisecond asked for is
the longest time calls on that loop would have waited. Parsing, validating,
building and compiling each changed pipeline run in a worker thread; only the
switches run on the loop. For comparison, the same reloads are run (interleaved)
with the pipelines compiled during the swap on the loop (as before), and with
parsing, validating and building on the loop too (as before that).

    .venv/bin/python benchmarks/reload_lag.py
    .venv/bin/python benchmarks/reload_lag.py --services 1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import meshlite as ml
from meshlite.config._load import gc_paused, load_plan
from meshlite.config._watcher import ConfigWatcher

BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi",
                                                                   strict=True)]
    + ["services: {s0: {backends: [http://127.0.0.1:1], metadata: *i}}", ""])


def config(services: int, attempts: int, changed: int | None = None) -> str:
    """``services`` services; the first ``changed`` (default: all) get ``attempts``."""
    lines = ["services:"]
    for i in range(services):
        tries = attempts if changed is None or i < changed else 3
        lines += [f"  s{i}:", f'    backends: ["http://127.0.0.1:{1000 + i % 60000}"]',
                  f"    retry: {{attempts: {tries}}}", "    timeout: 2.0"]
    return "\n".join(lines) + "\n"


async def lag_during(action: object) -> tuple[float, float]:
    """(seconds the action took, the longest tick gap beyond 1 ms, in seconds)."""
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
    start = time.perf_counter()
    await action  # type: ignore[misc]
    took = time.perf_counter() - start
    done = True
    await task
    return took, worst


async def _load_uncompiled(self: Any, text: str) -> Any:
    """The reload's parse and build run in a worker thread, but the changed pipelines
    are compiled during the swap, on the loop (the way before)."""
    managed = self.managed
    others = managed.others(self.mesh)

    def load() -> Any:
        with gc_paused():
            return load_plan(managed.path, environ=managed.environ, profile=managed.profile,
                             text=text, previous=managed.plan, others=others,
                             clock=managed.clock)

    return await asyncio.to_thread(load)


async def _load_on_the_loop(self: Any, text: str) -> Any:
    """The reload's parse and build run inline, on the event loop (the old way)."""
    managed = self.managed
    return load_plan(managed.path, environ=managed.environ, profile=managed.profile,
                     text=text, previous=managed.plan, others=managed.others(self.mesh),
                     clock=managed.clock)


async def run(services: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mesh.yaml"
        path.write_text(config(services, 3), encoding="utf-8")
        mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
        async with mesh:
            threaded = ConfigWatcher._load
            version = 4
            for changed, what in ((1, "one service changed"), (None, "every one changed")):
                lags: dict[str, list[float]] = {"now": [], "compiled": [], "on": []}
                for _ in range(runs):
                    for mode, load in (("now", threaded), ("compiled", _load_uncompiled),
                                       ("on", _load_on_the_loop)):
                        ConfigWatcher._load = load  # type: ignore[method-assign]
                        version += 1
                        path.write_text(config(services, version, changed), encoding="utf-8")
                        lags[mode].append((await lag_during(mesh.reload()))[1])
                ConfigWatcher._load = threaded  # type: ignore[method-assign]
                now, compiled, on = (statistics.median(v) for v in lags.values())
                print(f"{services} services, {what}, {runs} reloads each: longest loop "
                      f"stall, median: prepared off the loop {now * 1000:.1f} ms; pipelines "
                      f"compiled on the loop {compiled * 1000:.0f} ms "
                      f"({now / compiled:.3f}x); parsed on the loop {on * 1000:.0f} ms "
                      f"({now / on:.3f}x)")
            path.write_text(BOMB, encoding="utf-8")
            t, lag = await lag_during(mesh.reload())
            print(f"{len(BOMB.encode())}-byte alias bomb: rejected in {t * 1000:.0f} ms, "
                  f"longest loop stall {lag * 1000:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    asyncio.run(run(args.services, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
