"""Costs against the number of backends of a service and of services in a mesh.

Each row is one size; each column a cost that should stay flat (per call) or grow
linearly (per change, per scrape, per dashboard tick) with it. Backends are
addresses only: ``mesh.call_sync`` runs a trivial function, so the figures are the
mesh's own CPU, no network.

    .venv/bin/python benchmarks/scale.py            # about half a minute
    .venv/bin/python benchmarks/scale.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import meshlite as ml
from meshlite._console import render_table
from meshlite.observability._dashboard._monitor import Monitor, dumps
from meshlite.observability._prometheus import render_mesh

BALANCERS = ("p2c_ewma", "round_robin", "least_requests", "weighted_round_robin",
             "random", "ring_hash")


def _us(work: Callable[[], Any], times: int) -> float:
    work()
    start = time.perf_counter()
    for _ in range(times):
        work()
    return (time.perf_counter() - start) / times * 1e6


def _addresses(n: int) -> list[str]:
    return [f"http://127.0.0.1:{10000 + i}" for i in range(n)]


def _echo(backend: Any, x: Any) -> Any:
    return x


def _service(n: int, balancer: str) -> ml.Service:
    chosen: Any = ml.RingHash(key=lambda x: x) if balancer == "ring_hash" else balancer
    return ml.Service("s", _addresses(n), balancer=chosen, random=random.Random(1))


def backends_rows(sizes: tuple[int, ...], times: int) -> list[list[object]]:
    """Per call (each balancer), per retry pick, per manual ejection, per scrape."""
    rows: list[list[object]] = []
    for n in sizes:
        row: list[object] = [n]
        for balancer in BALANCERS:
            with ml.Mesh([_service(n, balancer)]) as mesh:
                row.append(f"{_us(functools.partial(mesh.call_sync, 's', _echo, 1), times):.1f}")
        service = _service(n, "p2c_ewma")
        for e in service.endpoints:
            e.answered = True
        service._track()
        ctx = ml.CallContext(print, (1,), {}, "op")
        ctx.tried = [service.endpoints[0].backend]
        row.append(f"{_us(functools.partial(service._choose, ctx), times):.1f}")
        start = time.perf_counter()
        for address in _addresses(n):
            service.eject(address)
        for address in _addresses(n):
            service.restore(address)
        row.append(f"{(time.perf_counter() - start) / (2 * n) * 1e6:.0f}")
        with ml.Mesh([service]) as mesh:
            for _ in range(2 * n):
                mesh.call_sync("s", _echo, 1)
            row.append(f"{_us(mesh.snapshot, 5) / 1e3:.2f}")
            row.append(f"{_us(functools.partial(render_mesh, mesh), 3) / 1e3:.1f}")
        rows.append(row)
    return rows


def services_rows(sizes: tuple[int, ...], times: int) -> list[list[object]]:
    """Per call, per snapshot, per scrape (and its size), per dashboard tick."""
    rows: list[list[object]] = []
    for m in sizes:
        services = [ml.Service(f"s{i}", _addresses(1)) for i in range(m)]
        with ml.Mesh(services) as mesh:
            for i in range(m):
                mesh.call_sync(f"s{i}", _echo, 1)
            call = _us(functools.partial(mesh.call_sync, f"s{m // 2}", _echo, 1), times)
            text = render_mesh(mesh)
            monitor = Monitor(mesh, max_clients=1)
            monitor.tick(0.0)
            start = time.perf_counter()
            frame = dumps(monitor.tick(1.0))
            tick = time.perf_counter() - start
            rows.append([m, f"{call:.1f}", f"{_us(mesh.snapshot, 2) / 1e3:.1f}",
                         f"{_us(functools.partial(render_mesh, mesh), 2) / 1e3:.0f}",
                         f"{len(text) / 1e6:.2f}", f"{tick * 1e3:.0f}",
                         f"{len(frame) / 1e3:.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few calls")
    quick = parser.parse_args().quick
    logging.disable(logging.CRITICAL)  # ejecting every backend logs each one
    sizes, times = ((1, 10, 50), 200) if quick else ((1, 10, 100, 500), 3000)
    print("Per service of n backends (us a call per balancer; us a retry's pick;"
          " us an ejection or return; ms a snapshot; ms a /metrics render):")
    print(render_table(["n", *BALANCERS, "retry pick", "eject", "snapshot", "metrics"],
                       backends_rows(sizes, times)))
    print("\nPer mesh of m services of one backend each:")
    print(render_table(["m", "call us", "snapshot ms", "metrics ms", "metrics MB",
                        "tick ms", "frame kB"],
                       services_rows((10, 100) if quick else (100, 1000, 3000), times)))


if __name__ == "__main__":
    main()
