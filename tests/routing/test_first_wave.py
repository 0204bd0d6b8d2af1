"""The first wave: a backend that has not answered takes one attempt at a time, and
async attempts that find every candidate so wait (bounded) for a first answer."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

import meshlite as ml
from meshlite.routing import P2CEwma
from meshlite.routing._first_wave import DEFAULT_FIRST_ANSWER_WAIT_SECONDS, FirstAnswerPending
from meshlite.testing import FakeClock

LATENCY = {"ok": 0.002, "slow": 0.12, "ok2": 0.003}


def service(clock: FakeClock, addresses: Any = LATENCY, **kwargs: Any) -> ml.Service:
    return ml.Service("s", list(addresses), clock=clock, random=random.Random(1),
                      pipeline=ml.Pipeline(), **kwargs)


def ctx() -> ml.CallContext:
    return ml.CallContext(lambda b: b, (), {}, "op", service="s")


def test_a_cold_first_wave_sends_one_request_to_the_slow_backend() -> None:
    # 32 concurrent calls on a cold client: without the gate p2c spread them evenly
    # (10-11 on the 120 ms backend); now it gets only its probe until it answers.
    clock = FakeClock()
    mesh = ml.Mesh([service(clock)], clock=clock)
    sent: list[tuple[str, float]] = []
    answered: dict[str, float] = {}

    async def fn(backend: ml.Backend) -> str:
        sent.append((backend.address, clock.monotonic()))
        await clock.asleep(LATENCY[backend.address])
        answered.setdefault(backend.address, clock.monotonic())
        return backend.address

    async def main() -> list[str]:
        return await asyncio.gather(*(mesh.call("s", fn) for _ in range(32)))

    results = asyncio.run(main())
    assert len(results) == 32
    before = [t for a, t in sent if a == "slow" and t < answered["slow"]]
    assert len(before) == 1, sent
    # The three probes went at once; the other 29 waited for the first answer (2 ms).
    assert sorted(t for _, t in sent)[:3] == [0.0, 0.0, 0.0]
    assert all(t >= LATENCY["ok"] for _, t in sorted(sent, key=lambda s: s[1])[3:])
    assert all(e.in_flight == 0 for e in mesh.service("s").endpoints)
    assert not mesh.service("s")._cold


def test_without_a_first_answer_the_wait_ends_at_its_bound_and_the_request_goes() -> None:
    clock = FakeClock()
    mesh = ml.Mesh([service(clock, ["a", "b", "c"])], clock=clock)
    sent: list[float] = []

    async def fn(backend: ml.Backend) -> str:
        sent.append(clock.monotonic())
        await clock.asleep(1.0)
        return backend.address

    async def main() -> list[str]:
        return await asyncio.gather(*(mesh.call("s", fn) for _ in range(6)))

    results = asyncio.run(main())
    assert Counter(results) == {"a": 2, "b": 2, "c": 2}
    assert sorted(sent) == [0.0] * 3 + [DEFAULT_FIRST_ANSWER_WAIT_SECONDS] * 3


def test_a_deadline_shorter_than_the_bound_is_respected() -> None:
    clock = FakeClock()
    svc = ml.Service("s", ["a", "b"], clock=clock, random=random.Random(1),
                     pipeline=ml.Pipeline(ml.Timeout(0.05, clock=clock)))
    mesh = ml.Mesh([svc], clock=clock)
    sent: list[float] = []

    async def fn(backend: ml.Backend) -> str:
        sent.append(clock.monotonic())
        await clock.asleep(1.0)
        return backend.address

    async def main() -> list[Any]:
        return await asyncio.gather(*(mesh.call("s", fn) for _ in range(3)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, ml.TimeoutExceeded) for r in results), results
    assert sent == [0.0, 0.0]  # the third waited and was never sent past its deadline
    assert clock.monotonic() < DEFAULT_FIRST_ANSWER_WAIT_SECONDS
    assert all(e.in_flight == 0 for e in svc.endpoints)
    assert not svc._waiters


def test_cancelling_a_waiting_call_leaks_nothing() -> None:
    clock = FakeClock()
    svc = service(clock, ["a", "b", "c"])
    mesh = ml.Mesh([svc], clock=clock)
    probes = asyncio.Event()

    async def fn(backend: ml.Backend) -> str:
        if sum(e.in_flight for e in svc.endpoints) == 3:
            probes.set()
        await clock.asleep(10.0)
        return backend.address

    async def main() -> None:
        calls = [asyncio.ensure_future(mesh.call("s", fn)) for _ in range(5)]
        await probes.wait()
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(svc._waiters or ()) == 2  # the two beyond the three probes
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

    asyncio.run(main())
    assert not svc._waiters
    assert [e.in_flight for e in svc.endpoints] == [0, 0, 0]
    assert [e.requests for e in svc.endpoints] == [0, 0, 0]  # cancelled: no answer


def test_once_every_backend_answered_picks_are_p2c_ewmas_own() -> None:
    clock = FakeClock()
    svc = service(clock)
    mesh = ml.Mesh([svc], clock=clock)
    assert svc._cold
    for _ in range(20):
        mesh.call_sync("s", lambda b: clock.advance(LATENCY[b.address]))
    assert all(e.answered for e in svc.endpoints)
    assert not svc._cold
    for e, busy in zip(svc.endpoints, (3, 0, 1), strict=True):
        e.in_flight = busy
    assert isinstance(svc.balancer, P2CEwma)
    twin = P2CEwma(random=random.Random())
    twin._rng.setstate(svc.balancer._rng.getstate())
    picks = [svc._choose(ctx()) for _ in range(200)]
    assert picks == [twin.pick(svc.endpoints, ctx()) for _ in range(200)]


def test_a_new_backend_beside_known_ones_gets_one_probe_at_a_time() -> None:
    clock = FakeClock()
    svc = service(clock, ["a", "b"])
    mesh = ml.Mesh([svc], clock=clock)
    for _ in range(10):
        mesh.call_sync("s", lambda b: clock.advance(0.01))
    assert not svc._cold
    svc.set_backends(["a", "b", "new"])
    assert svc._cold
    new = svc.endpoints[2]
    # Each pick begins an attempt that has not ended: the new one's probe stays out,
    # and no pick waits (known backends can take the requests).
    started: Counter[str] = Counter()
    for _ in range(50):
        endpoint = svc._choose(ctx())
        endpoint.begin()
        started[endpoint.address] += 1
    assert started["new"] == 1, started
    new.succeeded(new.begin())
    assert new.answered
    assert not svc._cold


def test_a_sync_call_does_not_wait_and_avoids_a_pending_probe() -> None:
    clock = FakeClock()
    svc = service(clock, ["a", "b", "c"])
    mesh = ml.Mesh([svc], clock=clock)
    a = svc.endpoints[0]
    a.begin()  # a's probe is in flight: sync calls go to b and c
    hits = Counter(mesh.call_sync("s", lambda e: e.address) for _ in range(30))
    assert hits["a"] == 0
    assert hits["b"]
    assert hits["c"]
    # Every candidate pending (a fresh service, a probe out on each): a sync call
    # picks as if there were no gate, at once.
    svc2 = service(clock, ["a", "b", "c"])
    mesh2 = ml.Mesh([svc2], clock=clock)
    for e in svc2.endpoints:
        e.begin()
    before = clock.monotonic()
    assert mesh2.call_sync("s", lambda e: e.address) in {"a", "b", "c"}
    assert clock.monotonic() == before


def test_a_health_probe_counts_as_an_answer() -> None:
    clock = FakeClock()
    svc = service(clock, ["a", "b"])
    for e in svc.endpoints:
        e.probed(0.004)
    assert not svc._cold


@pytest.mark.parametrize("balancer", ["round_robin", "least_requests", "random",
                                      "weighted_round_robin", "ring_hash"])
def test_only_p2c_ewma_has_the_gate(balancer: str) -> None:
    # Every backend has an attempt out and none has answered: only p2c_ewma holds.
    svc = ml.Service("s", ["a", "b"], balancer=balancer)
    assert not svc._cold
    for e in svc.endpoints:
        e.begin()
    assert svc._choose(ctx()) in svc.endpoints
    p2c = ml.Service("s", ["a", "b"])
    for e in p2c.endpoints:
        e.begin()
    with pytest.raises(FirstAnswerPending):
        p2c._choose(ctx())


def test_the_first_answer_is_seen_with_a_histogram_kept_before_it() -> None:
    clock = FakeClock()
    svc = service(clock, ["a", "b"])
    svc._record_histograms((0.01, 0.1))
    mesh = ml.Mesh([svc], clock=clock)
    for _ in range(4):
        mesh.call_sync("s", lambda b: clock.advance(0.002))
    assert not svc._cold
    histogram = svc.endpoints[0].histogram()
    assert histogram is not None
    assert sum(histogram[1]) == svc.endpoints[0].requests


def test_on_the_system_clock_waiters_wake_at_an_answer_from_any_thread() -> None:
    # Real clock (the loop's own timer bounds the wait). Three probes hang; three
    # more calls wait. A sync call on a worker thread finds every backend pending,
    # goes at once, and its answer, read on that thread, wakes the waiters, which
    # then go where it answered from.
    svc = ml.Service("s", ["a", "b", "c"], random=random.Random(1), pipeline=ml.Pipeline())
    mesh = ml.Mesh([svc])
    release = asyncio.Event()
    sent: list[str] = []

    async def hangs(backend: ml.Backend) -> str:
        sent.append(backend.address)
        if len(sent) <= 3:
            await release.wait()
        return backend.address

    async def main() -> tuple[list[str], str]:
        calls = [asyncio.ensure_future(mesh.call("s", hangs)) for _ in range(6)]
        for _ in range(10):  # every call runs to its first wait
            await asyncio.sleep(0)
        assert len(svc._waiters or ()) == 3
        assert sorted(sent) == ["a", "b", "c"]  # one probe each, then they wait
        answered_at = await asyncio.to_thread(mesh.call_sync, "s", lambda b: b.address)
        later = await asyncio.gather(*calls[3:])
        release.set()
        await asyncio.gather(*calls[:3])
        return list(later), answered_at

    later, answered_at = asyncio.run(main())
    assert later == [answered_at] * 3
    assert not svc._waiters
    assert [e.in_flight for e in svc.endpoints] == [0, 0, 0]
