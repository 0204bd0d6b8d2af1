"""Health checking many backends: what a round costs in connections and tasks.

Real loopback server; each backend is a distinct address (a path prefix) on it, as
a large deployment's backends are distinct hosts behind one check.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import meshlite as ml
from meshlite.routing import Backend, HealthCheck, HealthChecker, HttpHealthCheck
from meshlite.routing._lifecycle import START_CONCURRENCY
from meshlite.testing import FakeClock


class Counting:
    """A keep-alive HTTP server answering 200 to everything, counting the
    connections it accepted and the requests it answered. It holds every answer
    until ``together`` requests are waiting, so a round's probes are all in flight
    at once, as they are against backends some way off."""

    def __init__(self, together: int) -> None:
        self.connections = 0
        self.requests = 0
        self.together = together
        self.arrived = asyncio.Event()

    async def answer(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                arrived = self.arrived
                if self.requests % self.together == 0:
                    self.arrived = asyncio.Event()
                    arrived.set()
                await arrived.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def counting_server(together: int) -> AsyncIterator[tuple[str, Counting]]:
    counting = Counting(together)
    server = await asyncio.start_server(counting.answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", counting
    finally:
        server.close()


async def test_each_backend_keeps_its_probe_connection_between_rounds() -> None:
    # httpx's client kept 20 idle connections: with 45 backends, every round after
    # the first opened 25 connections again (a 300-service mesh of 50 backends
    # each: 9,000 connects a round, and as many sockets left in TIME_WAIT).
    async with counting_server(45) as (url, server):
        service = ml.Service("s", [f"{url}/b{i}" for i in range(45)],
                             health_check=HttpHealthCheck(interval=5.0))
        (checker,) = service.components
        assert isinstance(checker, HealthChecker)
        await checker.open()
        try:
            for _ in range(3):
                await checker.run_once()
        finally:
            await checker.stop()
        assert server.requests == 3 * 45
        assert server.connections == 45
        assert all(e.healthy for e in service.endpoints)


async def test_services_run_their_first_health_rounds_side_by_side() -> None:
    # The mesh waits for each service's first round before it is open; one service
    # after the other, 300 services each with one backend that does not answer took
    # 300 probe timeouts to open. Each probe here waits until START_CONCURRENCY of
    # them are in flight (else it times out, and its backend turns unhealthy).
    in_flight, peak = [0], [0]
    together = asyncio.Event()

    async def probe(backend: Backend) -> bool:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        if in_flight[0] == START_CONCURRENCY:
            together.set()
        try:
            await together.wait()
        finally:
            in_flight[0] -= 1
        return True

    check = HealthCheck(probe, interval=60.0, timeout=2.0, unhealthy_threshold=1)
    services = [ml.Service(f"s{i}", [f"http://b{i}"], health_check=check)
                for i in range(START_CONCURRENCY + 8)]
    services.append(ml.Service("web", ["http://web"], health_check=check,
                               depends_on=("s0", "s1")))
    async with ml.Mesh(services) as mesh:
        assert peak[0] == START_CONCURRENCY  # side by side, and no more at once
        assert {h.status for h in mesh.health().values()} == {"healthy"}


async def test_services_started_together_do_not_probe_in_lock_step() -> None:
    clocks = [FakeClock() for _ in range(20)]  # one each: its sleeps are its waits
    service = ml.Service("s", ["http://a"])
    checkers = [HealthChecker(service, HealthCheck(lambda b: True, interval=10.0), clock,
                              random.Random(i)) for i, clock in enumerate(clocks)]
    for checker in checkers:
        await checker.start()
    await asyncio.sleep(0)  # each background loop runs up to its first wait
    for checker in checkers:
        await checker.stop()
    first = [clock.sleeps[0] for clock in clocks]
    # From half an interval to a jittered one: +-10% alone kept them within 2 s.
    assert all(5.0 <= wait <= 11.0 for wait in first)
    assert max(first) - min(first) > 3.0


async def test_a_reload_starts_the_services_it_adds_side_by_side(tmp_path: Path) -> None:
    # The server answers once START_CONCURRENCY probes wait together: one service
    # after the other, each first probe timed out (and counted a failure).
    async with counting_server(START_CONCURRENCY) as (url, server):
        path = tmp_path / "mesh.yaml"
        path.write_text(f"services:\n  a:\n    backends: ['{url}/a']\n", encoding="utf-8")
        mesh = ml.Mesh.from_config(str(path), environ={})
        async with mesh:
            added = "".join(
                f"  s{i}:\n    backends: ['{url}/s{i}']\n"
                "    health_check: {interval: 60, timeout: 1.0}\n"
                for i in range(START_CONCURRENCY))
            path.write_text(f"services:\n  a:\n    backends: ['{url}/a']\n{added}",
                            encoding="utf-8")
            assert await mesh.reload()
            endpoints = [e for i in range(START_CONCURRENCY)
                         for e in mesh.service(f"s{i}").endpoints]
            assert server.requests == START_CONCURRENCY
            assert [e.health_failures for e in endpoints] == [0] * START_CONCURRENCY
