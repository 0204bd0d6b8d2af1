"""Discovery's waits (interval, TTL, retries) run on the service's clock, as health
checks' do: on a FakeClock given to the mesh, moving the clock re-resolves, with no
real waiting. (Like a health check's, the driver's sleeper also moves a FakeClock on
its own whenever nothing else runs: assertions hold whichever moved it.)"""

from __future__ import annotations

import asyncio
from typing import Any

import meshlite as ml
from meshlite.discovery import (
    BaseProvider,
    Discovery,
    DiscoveryFailed,
    DnsProvider,
    Resolution,
)
from meshlite.routing import Backend, BackendsChanged
from meshlite.testing import FakeClock

HOUR, DAY = 3600.0, 86400.0

BOUND = 10.0
"""Real seconds a test waits for what its fake clock makes due: it comes within a few
turns of the event loop (a driver sleeping in real time would wait an hour or a day)."""


class Listed(BaseProvider):
    """The backends the test lists, each resolve stamped with the clock's time."""

    def __init__(self, clock: FakeClock, *addresses: str) -> None:
        self.clock = clock
        self.addresses = list(addresses)
        self.failing = False
        self.broken_watch = False
        self.at: list[float] = []

    async def resolve(self) -> Resolution:
        self.at.append(self.clock.monotonic())
        if self.failing:
            raise ConnectionError("registry down")
        return Resolution(tuple(Backend(a) for a in self.addresses))

    async def changed(self) -> None:
        if self.broken_watch:
            self.broken_watch = False
            raise ConnectionError("watch broke")
        await super().changed()


class Seen:
    """The events of one service, awaited one kind at a time."""

    def __init__(self, service: ml.Service) -> None:
        self.queue: asyncio.Queue[ml.Event] = asyncio.Queue()
        service.add_hook(self.queue.put_nowait)

    async def next(self, kind: type[ml.Event]) -> Any:
        async with asyncio.timeout(BOUND):
            while not isinstance(event := await self.queue.get(), kind):
                pass
        return event


def users(provider: Listed, **options: Any) -> ml.Service:
    service = ml.Service("users", clock=options.pop("clock", None))
    service.attach(Discovery(service, provider, **options))
    return service


async def test_the_interval_passing_on_the_mesh_clock_reresolves(clock: FakeClock) -> None:
    provider = Listed(clock, "http://127.0.0.1:8001")
    service = users(provider, interval=HOUR)
    seen = Seen(service)
    async with ml.Mesh([service], clock=clock):  # the service takes the mesh's clock
        assert (await seen.next(BackendsChanged)).added == ("http://127.0.0.1:8001",)
        provider.addresses = ["http://127.0.0.1:8002"]
        clock.advance(HOUR)
        assert (await seen.next(BackendsChanged)).added == ("http://127.0.0.1:8002",)
        assert [b.address for b in service.backends] == ["http://127.0.0.1:8002"]
    assert clock.monotonic() >= HOUR
    assert provider.at == [HOUR * n for n in range(len(provider.at))]  # on the hour


async def test_a_failed_resolve_is_retried_on_the_clock(clock: FakeClock) -> None:
    provider = Listed(clock, "http://127.0.0.1:8001")
    service = users(provider, interval=HOUR, retry_interval=DAY)
    seen = Seen(service)
    async with ml.Mesh([service], clock=clock):
        await seen.next(BackendsChanged)
        provider.failing = True
        clock.advance(HOUR)
        await seen.next(DiscoveryFailed)
        assert [b.address for b in service.backends] == ["http://127.0.0.1:8001"]  # kept
        provider.failing, provider.addresses = False, ["http://127.0.0.1:8002"]
        clock.advance(DAY)
        assert (await seen.next(BackendsChanged)).added == ("http://127.0.0.1:8002",)


async def test_a_broken_watch_is_retried_on_the_clock(clock: FakeClock) -> None:
    provider = Listed(clock, "http://127.0.0.1:8001")
    provider.broken_watch = True
    service = users(provider, retry_interval=DAY)  # no interval, no TTL: the watch alone
    seen = Seen(service)
    async with ml.Mesh([service], clock=clock):
        await seen.next(BackendsChanged)
        assert "watch broke" in (await seen.next(DiscoveryFailed)).error
        provider.addresses = ["http://127.0.0.1:8002"]
        clock.advance(DAY)
        assert (await seen.next(BackendsChanged)).added == ("http://127.0.0.1:8002",)
    assert provider.at[:2] == [0.0, DAY]


async def test_a_service_clock_of_its_own_is_followed() -> None:
    mesh_clock, own = FakeClock(), FakeClock()
    provider = Listed(own, "http://127.0.0.1:8001")
    service = users(provider, interval=HOUR, clock=own)
    seen = Seen(service)
    async with ml.Mesh([service], clock=mesh_clock):
        await seen.next(BackendsChanged)
        provider.addresses = ["http://127.0.0.1:8002"]
        own.advance(HOUR)
        assert (await seen.next(BackendsChanged)).added == ("http://127.0.0.1:8002",)
    assert mesh_clock.monotonic() == 0.0


async def test_a_record_ttl_runs_on_the_mesh_clock(dns_server: Any, clock: FakeClock
                                                   ) -> None:
    dns_server.set("users.test", "A", int(HOUR), "127.0.0.1")
    service = ml.Service("users")
    service.attach(Discovery(service, DnsProvider(
        "users.test", port=8000, nameservers=["127.0.0.1"],
        nameserver_port=dns_server.port, timeout=1.0)))
    seen = Seen(service)
    async with ml.Mesh([service], clock=clock):
        await seen.next(BackendsChanged)
        dns_server.set("users.test", "A", int(HOUR), "127.0.0.1", "127.0.0.9")
        clock.advance(HOUR)  # the record's TTL
        assert (await seen.next(BackendsChanged)).added == ("http://127.0.0.9:8000",)
