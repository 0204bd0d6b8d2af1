"""Event-loop lag while a large config is reloaded: does traffic stall?

A mesh of 3,000 services (and, separately, a 581-byte YAML alias bomb) is reloaded
with ``await mesh.reload()`` while a ticker task on the same event loop wakes every
millisecond; the longest gap between two ticks beyond the millisecond asked for is
the longest time calls on that loop would have waited. Parsing, validating,
building and compiling each changed pipeline run in a worker thread; only the
switches run on the loop. For comparison, the same reloads are run (interleaved)
as before: the pipelines compiled during the swap on the loop, libyaml composing
the document in one GIL-holding call, the objects built left young for the next
collection; and with parsing, validating and building on the loop too.

    .venv/bin/python benchmarks/reload_lag.py
    .venv/bin/python benchmarks/reload_lag.py --services 1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import meshlite as ml
from meshlite.config import _watcher
from meshlite.config._load import gc_paused, load_plan
from meshlite.config._watcher import ConfigWatcher
from meshlite.discovery import _yaml

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


@contextlib.contextmanager
def _plain_pause() -> Iterator[None]:
    """Collection paused and resumed, the objects made meanwhile left young (before)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _load_before(self: Any, text: str) -> Any:
    """The reload as before: parsed (libyaml composing the whole document in one
    call) and built in a worker thread, the objects left young after the pause,
    and the changed pipelines compiled during the swap, on the loop."""
    managed = self.managed
    others = managed.others(self.mesh)

    def load() -> Any:
        with _plain_pause():
            return load_plan(managed.path, environ=managed.environ, profile=managed.profile,
                             text=text, previous=managed.plan, others=others,
                             clock=managed.clock)

    loaders = _yaml._loader
    assert loaders is not None
    _yaml._loader = [loaders[0], loaders[0]]
    try:
        return await asyncio.to_thread(load)
    finally:
        _yaml._loader = loaders


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
                lags: dict[str, list[float]] = {"now": [], "before": [], "on": []}
                for _ in range(runs):
                    for mode, load, pause in (
                            ("now", threaded, gc_paused), ("before", _load_before, _plain_pause),
                            ("on", _load_on_the_loop, _plain_pause)):
                        ConfigWatcher._load = load  # type: ignore[method-assign]
                        _watcher.gc_paused = pause  # the swap's pause
                        version += 1
                        path.write_text(config(services, version, changed), encoding="utf-8")
                        lags[mode].append((await lag_during(mesh.reload()))[1])
                ConfigWatcher._load = threaded  # type: ignore[method-assign]
                _watcher.gc_paused = gc_paused
                now, before, on = (statistics.median(v) for v in lags.values())
                print(f"{services} services, {what}, {runs} reloads each: longest loop "
                      f"stall, median: now {now * 1000:.1f} ms; before (pipelines compiled "
                      f"on the loop) {before * 1000:.0f} ms ({now / before:.3f}x); parsed "
                      f"on the loop {on * 1000:.0f} ms ({now / on:.3f}x)")
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
