"""Work that must not grow faster than the number of backends: bounds on the
operations routing makes at 100s of backends (counts, never timings)."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

import meshlite as ml
from meshlite.routing import (
    HealthCheck,
    HealthChecker,
    HealthCheckFailed,
    HealthCheckRecovered,
    Random,
    Service,
)
from meshlite.testing import FakeClock


class _CountingTuple(tuple):  # type: ignore[type-arg]
    """A tuple that counts membership tests (``x in t``, a scan of it each)."""

    contains = 0

    def __contains__(self, item: object) -> bool:
        type(self).contains += 1
        return tuple.__contains__(self, item)


def addresses(n: int) -> list[str]:
    return [f"http://127.0.0.1:{10000 + i}" for i in range(n)]


def test_ejecting_every_backend_by_hand_scans_the_backends_a_bounded_number_of_times() -> None:
    # Each manual ejection used to test every endpoint ejected by hand so far
    # against the backend tuple: O(n) scans per ejection, O(n^2) per change.
    n = 200
    service = Service("s", addresses(n), pipeline=ml.Pipeline(), clock=FakeClock(),
                      outlier_detection=None)
    counted: Any = _CountingTuple(service._endpoints)
    service._endpoints = counted
    _CountingTuple.contains = 0
    for address in addresses(n):
        service.eject(address)
    assert _CountingTuple.contains <= n
    assert all(service.restore(a) for a in addresses(n))
    assert not service.panic
    assert len(service._available) == n


class _Stub:
    """An endpoint as a balancer sees it, counting reads of ``in_flight``."""

    reads = 0
    weight = 1.0

    def __init__(self, address: str) -> None:
        self.address = address
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        type(self).reads += 1
        return self._in_flight


def test_ring_hash_reads_few_endpoints_per_pick_while_the_hashed_one_is_idle() -> None:
    # Bounded loads used to sum the requests in flight over every candidate and
    # test the candidates against the ring's members on every pick: O(n) a call.
    ring = ml.RingHash(key=lambda k: k)
    stubs: Any = [_Stub(a) for a in addresses(500)]
    ring.update(stubs)
    ctx = ml.CallContext(print, ("user-1",), {}, "op")
    first = ring.pick(stubs, ctx)
    _Stub.reads = 0
    for _ in range(10):
        assert ring.pick(stubs, ctx) is first
    assert _Stub.reads <= 10
    first._in_flight = 3  # busy: bounded loads weigh it against the others
    assert ring.pick(stubs, ctx) is not first


class _Weighed(_Stub):
    """An endpoint counting reads of ``weight``."""

    weight_reads = 0

    def __init__(self, address: str, weight: float) -> None:
        super().__init__(address)
        self._weight = weight

    @property  # type: ignore[override]
    def weight(self) -> float:
        type(self).weight_reads += 1
        return self._weight


def test_weighted_round_robin_with_equal_weights_reads_no_weight_per_pick() -> None:
    # Smooth weighted round robin adds every candidate's weight on every pick:
    # O(n) a call. With equal weights its order is plain round robin.
    wrr = ml.WeightedRoundRobin()
    stubs: Any = [_Weighed(a, 2.0) for a in addresses(500)]
    wrr.update(stubs)
    ctx = ml.CallContext(print, (), {}, "op")
    _Weighed.weight_reads = 0
    picked = [wrr.pick(stubs, ctx) for _ in range(1000)]
    assert _Weighed.weight_reads == 0
    assert picked == stubs + stubs  # in order, each once per round
    mixed: Any = [_Weighed("a", 5.0), _Weighed("b", 1.0), _Weighed("c", 1.0)]
    wrr.update(mixed)
    assert [wrr.pick(mixed, ctx).address for _ in range(7)] == list("aabacaa")


async def test_a_health_round_that_fails_every_backend_recomputes_the_rotation_once() -> None:
    # Each backend's transition used to rebuild the candidates (O(n)) on its own:
    # a zone going down cost O(n^2) in one round.
    n = 200
    answer = {"healthy": False}
    check = HealthCheck(lambda backend: answer["healthy"], unhealthy_threshold=1,
                        healthy_threshold=1)
    service = Service("s", addresses(n), pipeline=ml.Pipeline(), health_check=check,
                      clock=FakeClock())
    events: list[ml.Event] = []
    service.add_hook(events.append)
    recomputes = []
    recompute = service._recompute
    service._recompute = lambda now: recomputes.append(now) or recompute(now)  # type: ignore[method-assign]
    (runner,) = service.components
    assert isinstance(runner, HealthChecker)
    await runner.open()
    try:
        await runner.run_once()
        assert len(recomputes) == 1
        assert sum(isinstance(e, HealthCheckFailed) for e in events) == n
        assert service.panic
        answer["healthy"] = True
        await runner.run_once()
        assert len(recomputes) == 2
        assert sum(isinstance(e, HealthCheckRecovered) for e in events) == n
        assert not service.panic
        assert len(service._available) == n
    finally:
        await runner.stop()


def test_objects_given_no_random_source_share_one() -> None:
    # A random.Random is a Mersenne Twister state of about 2.5 KB: the balancer and
    # the default Retry of every service each made their own (5 KB a service).
    check = HealthCheck(lambda backend: True)
    a = Service("a", ["x"], health_check=check)
    b = Service("b", ["y"], balancer="round_robin", health_check=check)
    retries = [p for s in (a, b) for p in s.pipeline.policies if isinstance(p, ml.Retry)]
    sources = {id(a.balancer._rng), id(b.balancer._rng), *(id(r.random) for r in retries),
               *(id(c._rng) for s in (a, b) for c in s.components
                 if isinstance(c, HealthChecker))}
    assert len(retries) == 2
    assert len(sources) == 1
    mine = random.Random(3)
    assert Service("c", ["z"], random=mine).balancer._rng is mine


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")
def test_a_forked_child_draws_other_numbers_than_its_parent() -> None:
    # Forked workers must not move in lock step (the same picks in each process).
    shared = Service("a", ["x"]).balancer._rng
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next draw and leave at once
        os.write(write, repr(shared.random()).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = float(pipe.read())
    assert child != shared.random()


class _CountingList(list):  # type: ignore[type-arg]
    """A list that counts membership tests."""

    contains = 0

    def __contains__(self, item: object) -> bool:
        type(self).contains += 1
        return list.__contains__(self, item)


@pytest.mark.parametrize("balancer", ["p2c_ewma", "round_robin", "least_requests"])
def test_a_retry_among_many_backends_does_not_test_each_against_the_tried_ones(
        balancer: str) -> None:
    # A retry used to drop the tried backends from the candidates first: a scan of
    # all n of them for every retry. Picking first and scanning only when the pick
    # was tried makes that rare among many backends.
    n = 500
    service = Service("s", addresses(n), balancer=balancer, pipeline=ml.Pipeline(),
                      random=random.Random(7))
    for e in service.endpoints:
        e.answered = True
    service._track()
    first = service.endpoints[0].backend
    _CountingList.contains = 0
    picks = []
    for _ in range(200):  # 200 calls' second attempts, after the first on `first`
        ctx = ml.CallContext(print, (), {}, "op")
        ctx.tried = _CountingList([first])
        picks.append(service._choose(ctx))
        assert ctx.tried == [first, picks[-1].backend]  # the pick is recorded
    assert all(e.backend is not first for e in picks)
    assert _CountingList.contains <= 200 + 2 * n


def test_a_backend_out_of_rotation_that_never_answered_leaves_routing_warm() -> None:
    # The first-wave gate scans the candidates on every call while a backend has not
    # answered. One failing its health check from the start never answers (it gets
    # no traffic), which used to keep every call of the service scanning all n.
    service = Service("s", addresses(100), pipeline=ml.Pipeline(), clock=FakeClock())
    dead, *alive = service.endpoints
    for e in alive:
        e.answered = True
    service._track()  # (as the last first answer does)
    assert service._cold
    service._set_health(dead, False, "connection refused")
    assert not service._cold
    service._set_health(dead, True, "")  # back in rotation, not answered yet: gated
    assert service._cold


class _IterCountingTuple(tuple):  # type: ignore[type-arg]
    """A tuple that counts the scans of it (iterations)."""

    scans = 0

    def __iter__(self) -> Any:
        type(self).scans += 1
        return tuple.__iter__(self)


def test_picks_while_backends_have_not_answered_do_not_scan_the_candidates() -> None:
    # While a backend has not answered (the first wave), each pick used to drop the
    # ones busy with their probe from all n candidates first: a scan per call for
    # the n log n calls it takes every backend to answer.
    service = Service("s", addresses(200), pipeline=ml.Pipeline(), random=random.Random(3))
    assert service._cold
    counted: Any = _IterCountingTuple(service._available)
    service._available = counted
    ctx = ml.CallContext(print, (), {}, "op")
    _IterCountingTuple.scans = 0
    picks = [service._choose(ctx) for _ in range(100)]
    assert _IterCountingTuple.scans <= 5
    assert len(set(picks)) > 50
    busy = picks[-1]
    busy.begin()  # its probe is in flight: no second attempt there while others can
    assert all(service._choose(ctx) is not busy for _ in range(300))


def test_random_with_unequal_weights_does_not_sum_them_per_pick() -> None:
    # Weighted random summed every candidate's weight and walked them per pick:
    # O(n) a call. The candidates are the same tuple until the rotation changes.
    balancer = Random(random=random.Random(5))
    stubs: Any = tuple(_Weighed(a, 1.0 + i % 3) for i, a in enumerate(addresses(300)))
    balancer.update(stubs)
    ctx = ml.CallContext(print, (), {}, "op")
    _Weighed.weight_reads = 0
    picks = [balancer.pick(stubs, ctx) for _ in range(3000)]
    assert _Weighed.weight_reads <= len(stubs)
    heavy = sum(p._weight == 3.0 for p in picks) / sum(p._weight == 1.0 for p in picks)
    assert 2.5 < heavy < 3.5  # still in proportion to the weights
