"""Backends that leave the set and come back while traffic flows: a flapping DNS
record, a backend removed with requests in flight and put back while they finish,
an unhealthy or ejected one taken out and re-added, a file caught empty mid-write,
and many backends churning (nothing left behind for the removed ones)."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.discovery import (
    Discovery,
    DiscoveryFailed,
    DiscoveryRecovered,
    DnsProvider,
    FileProvider,
)
from meshlite.routing import Backend, BackendEjected, HealthCheck, Service
from meshlite.routing._backend_set import REMEMBERED_BACKENDS, REMEMBERED_SECONDS
from meshlite.testing import FakeBackend, FakeClock

WAIT = 10.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def statuses(mesh: ml.Mesh, name: str) -> dict[str, str]:
    return {b.address: b.status for b in mesh.health()[name].backends}


def retry(attempts: int) -> ml.Retry:
    return ml.Retry(attempts=attempts, backoff=ml.backoff.constant(0), budget=None)


async def test_a_failing_backend_that_flaps_in_dns_stays_ejected(dns_server: Any) -> None:
    # A registry or DNS answer that drops a backend and brings it back (a flapping
    # record, a rotating subset of a large set) must not hand it back fresh: it was
    # ejected, and traffic would find out again, one failed attempt at a time.
    clock = FakeClock(autojump_threshold=math.inf)  # moved by hand only
    async with FakeBackend() as good1, FakeBackend() as good2, \
            FakeBackend(error_rate=1.0) as bad:
        every = (good1, good2, bad)
        for i in range(3):
            dns_server.set(f"t{i}.svc", "A", 60, "127.0.0.1")

        def publish(*backends: FakeBackend) -> None:
            dns_server.set("_http._tcp.svc", "SRV", 5, *(
                f"0 1 {b.port} t{every.index(b)}.svc." for b in backends))

        publish(*every)
        service = Service("users", pipeline=ml.Pipeline(retry(3)),
                          outlier_detection=ml.OutlierDetection(
                              consecutive_failures=1, base_ejection_seconds=120.0))
        ejected: list[BackendEjected] = []
        service.add_hook(lambda e: ejected.append(e) if isinstance(e, BackendEjected)
                         else None)
        service.attach(Discovery(service, DnsProvider(
            "_http._tcp.svc", record="SRV", nameservers=["127.0.0.1"],
            nameserver_port=dns_server.port, timeout=1.0)))
        async with ml.Mesh([service], clock=clock) as mesh:
            session = mesh.aiohttp("users")
            for _ in range(100):  # until an attempt lands on the bad one
                async with session.get("/") as response:
                    assert response.status == 200  # (retried elsewhere)
                if ejected:
                    break
            assert [e.address for e in ejected] == [bad.url]
            publish(good1, good2)  # the record goes...
            clock.advance(5.0)
            await until(lambda: len(service.backends) == 2, "the record gone")
            publish(*every)  # ...and comes back
            clock.advance(5.0)
            await until(lambda: len(service.backends) == 3, "the record back")
            assert statuses(mesh, "users")[bad.url] == "ejected"
            before = bad.request_count
            for _ in range(40):
                async with session.get("/") as response:
                    assert response.status == 200
            assert bad.request_count == before
            assert [e.address for e in ejected] == [bad.url]  # not ejected anew


async def test_an_unhealthy_backend_removed_and_readded_stays_out_until_it_passes() -> None:
    clock = FakeClock(autojump_threshold=math.inf)
    down = {"http://b:1"}
    check = HealthCheck(lambda backend: backend.address not in down, interval=10.0,
                        unhealthy_threshold=1, jitter=0.0)
    service = Service("s", ["http://a:1", "http://b:1"], health_check=check,
                      pipeline=ml.Pipeline())
    async with ml.Mesh([service], clock=clock) as mesh:  # the first round: b fails
        assert statuses(mesh, "s") == {"http://a:1": "up", "http://b:1": "unhealthy"}
        service.set_backends(["http://a:1"])
        service.set_backends(["http://a:1", "http://b:1"])
        assert statuses(mesh, "s") == {"http://a:1": "up", "http://b:1": "unhealthy"}
        picked = {await mesh.call("s", lambda b: b.address) for _ in range(20)}
        assert picked == {"http://a:1"}
        down.clear()  # it passes its next probe, and only then comes back
        checker = service.components[0]
        rounds = checker.rounds  # type: ignore[attr-defined]
        clock.advance(10.0)
        await until(lambda: checker.rounds > rounds, "the next round")  # type: ignore[attr-defined]
        assert statuses(mesh, "s") == {"http://a:1": "up", "http://b:1": "up"}


def test_a_manual_ejection_holds_when_the_backend_leaves_and_returns() -> None:
    clock = FakeClock()
    service = Service("s", ["a", "b", "c"], pipeline=ml.Pipeline(), clock=clock)
    service.eject("c")
    service.set_backends(["a", "b"])
    service.set_backends(["a", "b", "c"])
    mesh = ml.Mesh([service])
    assert statuses(mesh, "s")["c"] == "ejected"
    assert service.out_reason(service.endpoints[2]) == "ejected by hand until restored"
    assert service.restore("c") is True
    assert statuses(mesh, "s")["c"] == "up"


def test_an_ejection_runs_its_course_while_the_backend_is_away() -> None:
    clock = FakeClock()
    events: list[ml.Event] = []
    service = Service("s", ["a", "b", "c"], pipeline=ml.Pipeline(retry(2)), clock=clock,
                      outlier_detection=ml.OutlierDetection(consecutive_failures=1,
                                                            base_ejection_seconds=30.0))
    service.add_hook(events.append)
    mesh = ml.Mesh([service])

    def fail_on_c(backend: Backend) -> str:
        if backend.address == "c":
            raise ConnectionError("refused")
        return backend.address

    while not any(isinstance(e, BackendEjected) for e in events):
        mesh.call_sync("s", fail_on_c)
    service.set_backends(["a", "b"])
    clock.advance(10.0)
    service.set_backends(["a", "b", "c"])  # 20 s of its ejection left
    assert statuses(mesh, "s")["c"] == "ejected"
    clock.advance(20.0)
    assert statuses(mesh, "s")["c"] == "up"
    # Away for longer than its ejection lasted: back in rotation, its ejection count
    # kept (the next ejection lasts longer), and no "returned" of an absent backend.
    while sum(isinstance(e, BackendEjected) for e in events) != 2:
        mesh.call_sync("s", fail_on_c)
    assert [e.seconds for e in events if isinstance(e, BackendEjected)] == [30.0, 60.0]
    service.set_backends(["a", "b"])
    clock.advance(100.0)
    returned = len([e for e in events if type(e).__name__ == "BackendReturned"])
    service.set_backends(["a", "b", "c"])
    assert statuses(mesh, "s")["c"] == "up"
    assert service.endpoints[2].ejections == 2
    assert len([e for e in events if type(e).__name__ == "BackendReturned"]) == returned


def test_a_backend_away_too_long_or_crowded_out_comes_back_new() -> None:
    clock = FakeClock()
    service = Service("s", ["a", "b", "c"], pipeline=ml.Pipeline(), clock=clock)
    service.eject("c", seconds=10.0)
    service.set_backends(["a", "b"])
    clock.advance(REMEMBERED_SECONDS)
    service.set_backends(["a", "b", "c"])
    assert service.endpoints[2].ejected_until is None
    assert not service.endpoints[2].answered
    service.eject("c", seconds=REMEMBERED_SECONDS)
    service.set_backends(["a", "b"])
    for i in range(REMEMBERED_BACKENDS + 1):  # as many removals of others since
        service.set_backends(["a", "b", f"x{i}"])
    service.set_backends(["a", "b", "c"])
    assert service.endpoints[2].ejected_until is None


async def test_a_backend_removed_and_readded_while_requests_drain() -> None:
    # Requests in flight on a removed backend finish (its pool closes after them);
    # put back meanwhile, it keeps what was learnt of it: it has answered before,
    # so its latency estimate is known, not a newcomer's blank.
    async with FakeBackend(latency=0.3) as slow, FakeBackend() as fast:
        service = Service("s", [slow.url, fast.url], balancer="round_robin",
                          pipeline=ml.Pipeline())
        async with ml.Mesh([service]) as mesh:
            session = mesh.aiohttp("s")
            for _ in range(2):  # one answer from each
                async with session.get("/") as response:
                    assert response.status == 200

            async def get() -> int:
                async with session.get("/") as response:
                    await response.read()
                    return response.status

            calls = [asyncio.create_task(get()) for _ in range(8)]
            old = service.endpoints[0]
            await until(lambda: old.in_flight == 4, "four requests on the slow one")
            service.set_backends([fast.url])
            service.set_backends([slow.url, fast.url])
            returned = service.endpoints[0]
            assert returned.answered
            assert returned.ewma > 0.0
            assert await asyncio.gather(*calls) == [200] * 8
            assert old.in_flight == 0


async def test_a_file_caught_empty_mid_write_keeps_the_backends_and_says_why(
        tmp_path: Path) -> None:
    path = tmp_path / "backends.yaml"
    path.write_text("- http://a:1\n- http://b:1\n")
    service = Service("s", ["http://static:1"])
    events: list[ml.Event] = []
    service.add_hook(events.append)
    service.attach(Discovery(service, FileProvider(path)))
    async with ml.Mesh([service]):
        path.write_text("")  # truncated: the write that follows is not there yet
        await until(lambda: any(isinstance(e, DiscoveryFailed) for e in events), "failure")
        failed = next(e for e in events if isinstance(e, DiscoveryFailed))
        assert "the file is empty" in failed.error
        assert failed.backends == ("http://a:1", "http://b:1")
        assert [b.address for b in service.backends] == ["http://a:1", "http://b:1"]
        path.write_text(json.dumps(["http://c:1"]))
        await until(lambda: any(isinstance(e, DiscoveryRecovered) for e in events),
                    "recovery")
        assert [b.address for b in service.backends] == ["http://c:1"]


async def test_fifty_backends_churning_leave_nothing_behind() -> None:
    # Every second of a minute, 50 backends replaced by 50 others, with health
    # checks and traffic: no task, thread or endpoint is left for removed ones.
    clock = FakeClock(autojump_threshold=math.inf)

    async def probe(backend: Backend) -> bool:
        return not backend.address.endswith("7")

    service = Service("s", [f"http://127.0.0.1:{1000 + i}" for i in range(50)],
                      health_check=HealthCheck(probe, interval=1.0, jitter=0.0,
                                               unhealthy_threshold=1),
                      pipeline=ml.Pipeline(retry(2)))
    async with ml.Mesh([service], clock=clock) as mesh:
        tasks, threads = len(asyncio.all_tasks()), threading.active_count()
        first = weakref.ref(service.endpoints[0])
        checker = service.components[0]
        for second in range(1, 61):
            service.set_backends([f"http://127.0.0.1:{1000 + 50 * second + i}"
                                  for i in range(50)])
            rounds = checker.rounds  # type: ignore[attr-defined]
            clock.advance(1.0)
            await until(lambda r=rounds: checker.rounds > r, "a round")  # type: ignore[attr-defined,misc]
            for _ in range(10):
                assert await mesh.call("s", lambda b: b.address) != ""
        gc.collect()
        assert first() is None
        assert len(asyncio.all_tasks()) == tasks
        assert threading.active_count() <= threads
        assert len(service.endpoints) == 50
