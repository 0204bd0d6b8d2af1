"""Costs at the scale of a large deployment: 300 services of 50 backends each.

Every backend is a distinct address; the ones that are contacted (health checks,
requests) are path prefixes on four loopback ports of a small HTTP server in a
child process (its own interpreter: the mesh's CPU figures are the mesh's). Rows:

- build: ``Mesh.from_config`` of a YAML file (health checks, outlier detection,
  retry, breaker on every service), time and memory, at 100 and 300 services;
- reload: one backend of one service changed in that file, ``await mesh.reload()``:
  how many services were replaced, whether the other backends' state was kept;
- health: rounds of probes of 20 services of 50 backends (each answering in 100 ms),
  one client per service, with an ``httpx.AsyncClient`` as it comes (what
  ``HttpHealthCheck`` used before) and with ``HttpHealthCheck``'s session, side by
  side: CPU per probe and connections opened by four rounds; and the mesh's start
  with one silent backend in every service;
- routing: ``mesh.call_sync`` of a trivial function, per balancer, at 5, 50 and
  500 backends (flat means O(1) per call);
- /metrics and the dashboard: one exposition and one dashboard frame of the whole
  mesh after one call to every backend;
- pools: ``mesh.http()`` requests to every backend of 60 services: open file
  descriptors and transports, then again after the pools' idle expiry.

    .venv/bin/python benchmarks/topology.py            # about two minutes
    .venv/bin/python benchmarks/topology.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

import meshlite as ml
from meshlite._http._probe import http_probe_session
from meshlite._inbound._topology import topology
from meshlite.observability._dashboard._monitor import Monitor, dumps
from meshlite.observability._prometheus import render_mesh
from meshlite.routing import Backend, HttpHealthCheck

SERVER = r"""
import asyncio, json, os, sys
connections = [0]
async def answer(reader, writer):
    connections[0] += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0]
            if b"/silent/" in line:
                await asyncio.sleep(3600)
            if b"/healthz" in line:  # a health endpoint some way off
                await asyncio.sleep(0.1)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    except Exception:
        pass
    finally:
        writer.close()
async def main():
    servers = [await asyncio.start_server(answer, "127.0.0.1", 0, backlog=4096)
               for _ in range(4)]
    print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(connections[0], flush=True)
    os._exit(0)  # the silent answers wait forever: no teardown
asyncio.run(main())
"""


class Server:
    """The child process's four ports, and how many connections it has accepted."""

    def __init__(self) -> None:
        self._child = subprocess.Popen([sys.executable, "-c", SERVER], text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._child.stdout is not None
        self.ports: list[int] = json.loads(self._child.stdout.readline())

    def address(self, service: int, backend: int, width: int = 50) -> str:
        port = self.ports[(service * width + backend) % len(self.ports)]
        return f"http://127.0.0.1:{port}/s{service}/b{backend}"

    def connections(self) -> int:
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.write("count\n")
        self._child.stdin.flush()
        return int(self._child.stdout.readline())

    def close(self) -> None:
        assert self._child.stdin is not None
        self._child.stdin.close()
        self._child.wait()


def config_text(services: int, backends: int, first: str = "b0", health: bool = True
                ) -> str:
    """The file; ``first`` names the first backend of service s0."""
    lines = ["services:"]
    for i in range(services):
        lines += [f"  s{i}:", "    backends:"]
        lines += [f"      - http://127.0.0.1:9/s{i}/{first if i == j == 0 else f'b{j}'}"
                  for j in range(backends)]
        if health:
            lines.append("    health_check: {path: /healthz, interval: 5, timeout: 1}")
        lines += [
                  "    outlier_detection: {consecutive_failures: 5}",
                  "    retry: {attempts: 3}",
                  "    circuit_breaker: {failure_rate: 0.5, window: 50, min_calls: 10}"]
    return "\n".join(lines) + "\n"


def build_rows(sizes: tuple[int, ...]) -> list[str]:
    out = []
    with tempfile.TemporaryDirectory() as directory:
        for services in (2, *sizes):  # the first imports what building needs
            path = Path(directory) / f"mesh{services}.yaml"
            path.write_text(config_text(services, 50), encoding="utf-8")
            start = time.perf_counter()
            ml.Mesh.from_config(str(path), environ={})
            seconds = time.perf_counter() - start
            tracemalloc.start()  # a second build, traced (which slows it down)
            mesh = ml.Mesh.from_config(str(path), environ={})
            held = tracemalloc.get_traced_memory()[0]
            del mesh
            tracemalloc.stop()
            if services == 2:
                continue
            out.append(f"  {services} x 50 from a {path.stat().st_size / 1e3:.0f} kB file: "
                       f"{seconds * 1e3:.0f} ms ({seconds / services / 50 * 1e6:.1f} us a "
                       f"backend), {held / 1e6:.0f} MB held by the mesh")
    return out


async def reload_rows(services: int) -> list[str]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "mesh.yaml"
        # no health check here: the addresses are not served
        path.write_text(config_text(services, 50, health=False), encoding="utf-8")
        mesh = ml.Mesh.from_config(str(path), environ={})
        async with mesh:
            before = {s.name: s for s in mesh.services}
            endpoints = {id(e) for s in before.values() for e in s.endpoints}
            path.write_text(config_text(services, 50, "moved", health=False),
                            encoding="utf-8")
            start = time.perf_counter()
            await mesh.reload()
            seconds = time.perf_counter() - start
            replaced = sum(mesh.service(n) is not s for n, s in before.items())
            kept = sum(id(e) in endpoints for s in mesh.services for e in s.endpoints)
    return [f"  one backend of one service changed in {services} x 50: applied in "
            f"{seconds * 1e3:.0f} ms; services replaced {replaced}; backends kept "
            f"(same object: latency, ejection, health) {kept} of {services * 50 - 1}"]


async def probe_cost(server: Server, services: list[list[Backend]],
                     session: Callable[[], Any]) -> tuple[float, int, int]:
    """CPU per probe, connections opened and failed probes over four rounds: one
    session per service, as each service's checker has, the services side by side."""
    before = server.connections()
    async with contextlib.AsyncExitStack() as stack:
        probes = [await stack.enter_async_context(session()) for _ in services]

        async def round_() -> int:
            answers = await asyncio.gather(*(
                probe(b) for probe, backends in zip(probes, services, strict=True)
                for b in backends))
            return sum(answer not in (None, True) for answer in answers)

        failed = await round_()  # the first connects
        start = time.process_time()
        for _ in range(3):
            failed += await round_()
        cpu = (time.process_time() - start) / (3 * sum(map(len, services)))
    return cpu, server.connections() - before, failed


@contextlib.asynccontextmanager
async def httpx_session() -> AsyncIterator[Callable[[Backend], Any]]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        async def probe(backend: Backend) -> bool:
            try:
                return (await client.get(backend.address + "/healthz")).is_success
            except httpx.HTTPError:
                return False
        yield probe


async def health_rows(server: Server, services: int, silent: int) -> list[str]:
    backends = [[Backend(server.address(i, j)) for j in range(50)] for i in range(services)]
    out = []
    for name, session in (("httpx.AsyncClient (before)", httpx_session),
                          ("HttpHealthCheck's session", functools.partial(
                              http_probe_session, "/healthz", 5.0, keepalive=6.5))):
        cpu, opened, failed = await probe_cost(server, backends, session)
        out.append(f"  {name:28} {cpu * 1e6:6.0f} us CPU a probe; {opened:5} connections "
                   f"opened by 4 rounds of {services} x 50 backends; {failed} failed")
    port = server.ports[0]
    mesh = ml.Mesh([ml.Service(f"s{i}", [f"http://127.0.0.1:{port}/s{i}/ok",
                                         f"http://127.0.0.1:{port}/silent/{i}"],
                               health_check=HttpHealthCheck(timeout=0.2))
                    for i in range(silent)])
    start = time.perf_counter()
    async with mesh:
        seconds = time.perf_counter() - start
        tasks = len(asyncio.all_tasks()) - 1
    out.append(f"  start of {silent} services with a silent backend each (0.2 s probe "
               f"timeout): {seconds:.2f} s ({seconds / 0.2:.0f} timeouts; one service after "
               f"the other, as before: {silent} timeouts); {tasks} tasks")
    return out


def routing_rows(times: int) -> list[str]:
    out = ["  backends   " + "".join(f"{b:>16}" for b in ("p2c_ewma", "ring_hash",
                                                          "least_requests"))]
    for n in (5, 50, 500):
        cells = []
        for balancer in ("p2c_ewma", "ring_hash", "least_requests"):
            chosen: Any = ml.RingHash(key=lambda x: x) if balancer == "ring_hash" else balancer
            service = ml.Service("s", [f"http://127.0.0.1:9/b{j}" for j in range(n)],
                                 balancer=chosen)
            with ml.Mesh([service]) as mesh:
                call = functools.partial(mesh.call_sync, "s", _echo, 1)
                call()
                best = math.inf  # the least of three runs: the machine is shared
                for _ in range(3):
                    start = time.perf_counter()
                    for _ in range(times):
                        call()
                    best = min(best, time.perf_counter() - start)
                cells.append(f"{best / times * 1e6:13.1f} us")
        out.append(f"  {n:8}   " + "".join(f"{c:>16}" for c in cells))
    return out


def _echo(backend: Any, x: Any) -> Any:
    return x


def exposition_rows(services: int) -> list[str]:
    mesh = ml.Mesh([ml.Service(f"s{i}", [f"http://127.0.0.1:9/s{i}/b{j}" for j in range(50)],
                               balancer="round_robin", outlier_detection=ml.OutlierDetection())
                    for i in range(services)])
    with mesh:
        for i in range(services):
            for _ in range(50):
                mesh.call_sync(f"s{i}", _echo, 1)
        start = time.process_time()
        text = render_mesh(mesh)
        render = time.process_time() - start
        series = sum(1 for line in text.splitlines() if line and line[0] != "#")
        rng = random.Random(1)
        for service in mesh.services:  # reservoirs full, as after 512 attempts each
            for e in service.endpoints:
                e._latencies.extend(rng.expovariate(100.0) for _ in range(512))
        monitor = Monitor(mesh, max_clients=1)
        monitor.tick(0.0)
        ticks = {}
        for k, name in enumerate(("now", "before", "now", "before"), start=1):
            if name == "before":  # as before: every reservoir sorted at every tick
                for service in mesh.services:
                    for e in service.endpoints:
                        e._sorted = (-1, [])
            start = time.process_time()
            frame = dumps(monitor.tick(float(k)))
            ticks.setdefault(name, []).append(time.process_time() - start)
        # /api/topology's edges: two totals a service, against a snapshot of every
        # backend (what it read before), alternated.
        answers: dict[str, list[float]] = {}
        for name, answer in (("now", lambda: topology(mesh, monitor.latest)),
                             ("before", mesh.snapshot)) * 3:
            start = time.process_time()
            answer()
            answers.setdefault(name, []).append(time.process_time() - start)
    return [f"  /metrics: {len(text) / 1e6:.1f} MB, {series} series, {render * 1e3:.0f} ms "
            "CPU to render",
            f"  dashboard: {len(frame) / 1e3:.0f} kB a frame each second, the whole mesh "
            "(nothing changed); CPU a tick with every reservoir full: "
            + ", ".join(f"{name} {min(t) * 1e3:.0f} ms" for name, t in ticks.items()),
            "  /api/topology: CPU an answer, now "
            f"{min(answers['now']) * 1e3:.1f} ms, before (a snapshot of every backend) "
            f"{min(answers['before']) * 1e3:.0f} ms"]


async def pool_rows(server: Server, services: int) -> list[str]:
    mesh = ml.Mesh([ml.Service(f"s{i}", [server.address(i, j) for j in range(50)],
                               balancer="round_robin") for i in range(services)])
    async with mesh:
        fds = len(os.listdir("/proc/self/fd"))
        for i in range(services):
            client = mesh.http(f"s{i}")
            await asyncio.gather(*(client.get("/x") for _ in range(50)))
        opened = len(os.listdir("/proc/self/fd")) - fds
        transports = sum(p.transports() for p in mesh._http._made.values())
        await asyncio.sleep(6.5)  # past keepalive_expiry (5 s)
        idle = len(os.listdir("/proc/self/fd")) - fds
    return [f"  {services * 50} backends each sent 1 request: {transports} transports, "
            f"{opened} file descriptors open; {idle} after 6.5 s idle"]


@contextlib.contextmanager
def child_server() -> Iterator[Server]:
    server = Server()
    try:
        yield server
    finally:
        server.close()


async def networked(quick: bool) -> None:
    with child_server() as server:
        print("\nHealth checking (CPU per probe, connections):")
        print("\n".join(await health_rows(server, 3 if quick else 20, 8 if quick else 64)))
        print("\nOutbound pools:")
        print("\n".join(await pool_rows(server, 4 if quick else 60)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    quick = parser.parse_args().quick
    logging.disable(logging.CRITICAL)  # silent backends log each failed probe
    services = 20 if quick else 300
    print("Build from config:")
    print("\n".join(build_rows((10, 20) if quick else (100, 300))))
    print("\nReload:")
    print("\n".join(asyncio.run(reload_rows(services))))
    asyncio.run(networked(quick))
    print("\nRouting, us a call (flat: O(1)):")
    print("\n".join(routing_rows(300 if quick else 5000)))
    print(f"\n{services} services x 50 backends, one call to each backend:")
    print("\n".join(exposition_rows(services)))


if __name__ == "__main__":
    main()
