"""Bytes the dashboard's WebSocket feed sends a viewer each second, at scale.

A mesh of 300 services of 50 backends each (15,000 rows) serves its dashboard on
loopback; one viewer connects over a real WebSocket (the ``websockets`` client) and
counts the bytes of every message. Steady state: a few services get a few calls a
second (their rows and a few backends' figures move), the rest is idle. The calls
run a Python function, so no backend is ever contacted.

Prints the size of the ``hello`` (the first frame on a connection, made once a
first viewer has had a frame, so that it holds the mesh where the feed puts it), in
bytes a backend, and deflated as the server sends it to a browser (permessage-deflate
with uvicorn's settings: a 4 kB window, memLevel 5; Chromium and ``websockets``
negotiate it), and of the first frame after it; then the mean bytes a frame (one a
second) of the frames after that; the process's CPU a frame, and of it the CPU to
make one frame whole, as a delta, and a hello (least of five).

    .venv/bin/python benchmarks/dashboard_feed.py            # 300 x 50, 10 frames
    .venv/bin/python benchmarks/dashboard_feed.py --quick    # 30 x 50, 3 frames
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import meshlite as ml
from meshlite.observability._dashboard._frames import delta_frame, hello_frame
from meshlite.observability._dashboard._monitor import Monitor, dumps
from meshlite.routing._snapshot import balancer_name

BUSY_SERVICES = 3  # services that get calls each second
CALLS_A_SECOND = 5  # calls to each of them


def make_mesh(services: int, backends: int) -> ml.Mesh:
    # Loopback addresses, never contacted (the calls run a function).
    return ml.Mesh([
        ml.Service(f"service-{i}", [f"http://127.{i // 250}.{i % 250}.{j + 1}:8080"
                                    for j in range(backends)],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name=f"breaker-{i}")))
        for i in range(services)])


def _answer(backend: Any) -> str:
    return "ok"


async def traffic(mesh: ml.Mesh) -> None:
    """A few calls a second to the first few services, until cancelled."""
    while True:
        for i in range(BUSY_SERVICES):
            for _ in range(CALLS_A_SECOND):
                mesh.call_sync(f"service-{i}", _answer)
        await asyncio.sleep(1.0)


def deflated(text: str) -> int:
    """The bytes of ``text`` on the wire in a WebSocket message compressed as uvicorn's
    server compresses it (permessage-deflate: raw deflate, 12-bit window, memLevel 5,
    the 4-byte sync marker left off), ignoring the context kept from earlier ones."""
    packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -12, 5)
    return len(packer.compress(text.encode()) + packer.flush(zlib.Z_SYNC_FLUSH)) - 4


def _least_cpu(work: Callable[[], object], rounds: int = 5) -> float:
    best = math.inf
    for _ in range(rounds):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def frame_costs(monitor: Monitor) -> dict[str, float]:
    """CPU to make the next frame whole (encoded) and as a delta from the last one
    sent (compared and encoded), and a hello holding the last one (made as the
    server makes it for each viewer that connects): least of five."""
    previous = monitor.feed.previous
    assert previous is not None
    now = monitor.tick()
    balancers = {s.name: balancer_name(s) for s in monitor.services()}
    alerts = monitor.mesh.alerts.as_dict()
    return {"whole_cpu": _least_cpu(lambda: dumps(now)),
            "delta_cpu": _least_cpu(lambda: dumps(delta_frame(previous, now))),
            "hello_cpu": _least_cpu(lambda: dumps(hello_frame(
                previous, balancers, monitor.history_seconds, alerts)))}


def _connect(url: str) -> Any:
    from websockets.asyncio.client import connect

    kwargs: dict[str, Any] = {"max_size": None}
    if "proxy" in inspect.signature(connect).parameters:
        kwargs["proxy"] = None  # straight to loopback, whatever the environment says
    return connect(url, **kwargs)


async def measure(services: int, backends: int, frames: int) -> dict[str, Any]:
    mesh = make_mesh(services, backends)
    server = await mesh.serve_dashboard(port=0, max_clients=4)
    load = asyncio.create_task(traffic(mesh))
    sizes: list[int] = []
    try:
        url = server.url.replace("http://", "ws://") + "/ws"
        async with _connect(url) as ws:  # its frame after the hello: one was pushed
            await ws.recv()
            await ws.recv()
        async with _connect(url) as ws:
            hello = await ws.recv()
            first = await ws.recv()
            cpu, start = time.process_time(), time.monotonic()
            for _ in range(frames):
                sizes.append(len((await ws.recv()).encode()))
            cpu, elapsed = time.process_time() - cpu, time.monotonic() - start
            made = frame_costs(server.monitor)
    finally:
        load.cancel()
        await asyncio.wait([load])
        await server.stop()
    return {**made, "hello": len(hello.encode()), "hello_deflated": deflated(hello),
            "first": len(first.encode()), "kind": json.loads(first)["type"],
            "sizes": sizes, "elapsed": elapsed, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 x 50 backends, 3 frames")
    parser.add_argument("--frames", type=int, default=None, help="frames measured (10)")
    args = parser.parse_args()
    services, backends = (30, 50) if args.quick else (300, 50)
    frames = args.frames or (3 if args.quick else 10)
    found = asyncio.run(measure(services, backends, frames))
    sizes = found["sizes"]
    print(f"dashboard feed, one viewer over a WebSocket on loopback: {services} services "
          f"x {backends} backends, {BUSY_SERVICES} services with {CALLS_A_SECOND} calls a "
          f"second, the rest idle")
    print(f"  hello {found['hello'] / 1e3:.0f} kB ({found['hello'] / (services * backends):.0f} "
          f"bytes a backend), {found['hello_deflated'] / 1e3:.0f} kB deflated as sent; "
          f"first frame after it ({found['kind']}) {found['first'] / 1e3:.1f} kB")
    print(f"  next {len(sizes)} frames: mean {statistics.fmean(sizes) / 1e3:.1f} kB a frame, "
          f"min {min(sizes) / 1e3:.1f} kB, max {max(sizes) / 1e3:.1f} kB; "
          f"{sum(sizes) / found['elapsed'] / 1e3:.1f} kB a second per viewer")
    print(f"  process CPU (server, traffic and viewer) a frame: "
          f"{found['cpu'] / len(sizes) * 1e3:.0f} ms; to make one frame: whole "
          f"{found['whole_cpu'] * 1e3:.1f} ms, delta {found['delta_cpu'] * 1e3:.1f} ms, "
          f"hello {found['hello_cpu'] * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
