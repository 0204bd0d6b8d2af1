"""Each balancer's distribution, on seeded randomness."""

from __future__ import annotations

import heapq
import random
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.mesh import Mesh
from meshlite.routing import (
    BALANCERS,
    Backend,
    Balancer,
    Endpoint,
    LeastRequests,
    P2CEwma,
    Random,
    RingHash,
    RoundRobin,
    Service,
    WeightedRoundRobin,
)
from meshlite.testing import FakeClock


def endpoints(clock: FakeClock, *weights: float) -> list[Endpoint]:
    return [Endpoint(Backend(chr(ord("a") + i), weight=w), clock) for i, w in enumerate(weights)]


def ctx(*args: Any, request: Any = None) -> ml.CallContext:
    c = ml.CallContext(print, args, {}, "op")
    if request is not None:
        c.request = request
    return c


def spread(balancer: Any, eps: Sequence[Endpoint], n: int, call: Any = None) -> Counter[str]:
    if hasattr(balancer, "update"):
        balancer.update(eps)
    c = call if call is not None else ctx()
    return Counter(balancer.pick(eps, c).address for _ in range(n))


def test_round_robin_is_even_and_cyclic(clock: FakeClock) -> None:
    eps = endpoints(clock, 1, 5, 1)
    rr = RoundRobin(random=random.Random(1))
    picks = [rr.pick(eps, ctx()).address for _ in range(6)]
    assert picks[:3] == picks[3:]
    assert sorted(picks[:3]) == ["a", "b", "c"]  # weights are ignored


def test_smooth_weighted_round_robin_interleaves(clock: FakeClock) -> None:
    eps = endpoints(clock, 5, 1, 1)
    wrr = WeightedRoundRobin()
    order = "".join(wrr.pick(eps, ctx()).address for _ in range(7))
    assert order == "aabacaa"  # nginx's smooth order: never five a's in a row
    assert spread(wrr, eps, 700) == {"a": 500, "b": 100, "c": 100}


def test_weighted_round_robin_over_a_subset(clock: FakeClock) -> None:
    eps = endpoints(clock, 2, 1, 1)
    wrr = WeightedRoundRobin()
    assert spread(wrr, eps[:2], 300) == {"a": 200, "b": 100}


def test_random_uniform_and_weighted(clock: FakeClock) -> None:
    uniform = spread(Random(random=random.Random(7)), endpoints(clock, 1, 1, 1, 1), 8000)
    assert all(1800 < n < 2200 for n in uniform.values())
    weighted = spread(Random(random=random.Random(7)), endpoints(clock, 3, 1), 8000)
    assert 5700 < weighted["a"] < 6300


def test_random_without_update_still_weights(clock: FakeClock) -> None:
    r = Random(random=random.Random(3))
    eps = endpoints(clock, 9, 1)
    counts = Counter(r.pick(eps, ctx()).address for _ in range(2000))
    assert counts["a"] > 1700


def test_least_requests_avoids_the_loaded(clock: FakeClock) -> None:
    eps = endpoints(clock, 1, 1, 1)
    eps[0].in_flight = 10
    counts = spread(LeastRequests(random=random.Random(2)), eps, 3000)
    # Power of two: the loaded one wins only when it is drawn against itself (never).
    assert counts["a"] == 0
    assert 1300 < counts["b"] < 1700


def test_least_requests_divides_by_weight(clock: FakeClock) -> None:
    eps = endpoints(clock, 4, 1)
    eps[0].in_flight, eps[1].in_flight = 2, 1
    assert spread(LeastRequests(random=random.Random(2)), eps, 100) == {"a": 100}


def test_p2c_ewma_prefers_the_fast_backend(clock: FakeClock) -> None:
    eps = endpoints(clock, 1, 1, 1)
    for e, latency in zip(eps, (0.5, 0.01, 0.01), strict=True):
        start = e.begin()
        clock.advance(latency)
        e.succeeded(start)
    counts = spread(P2CEwma(random=random.Random(5)), eps, 3000)
    assert counts["a"] == 0  # drawn with a faster one every time, and always losing
    assert counts["b"] + counts["c"] == 3000


def test_p2c_ewma_weighs_load_against_latency(clock: FakeClock) -> None:
    fast, slow = endpoints(clock, 1, 1)
    for e, latency in ((fast, 0.01), (slow, 0.04)):
        start = e.begin()
        clock.advance(latency)
        e.succeeded(start)
    balancer = P2CEwma(random=random.Random(1))
    assert balancer.pick([fast, slow], ctx()) is fast
    fast.in_flight = 5  # 0.01 * 6 > 0.04 * 1
    assert balancer.pick([fast, slow], ctx()) is slow


def test_p2c_ewma_does_not_count_load_twice(clock: FakeClock) -> None:
    # A busy client keeps 16 requests in flight on `busy`, each answered in 40 ms:
    # the latency was measured under that load, so the next request there is
    # expected to take about 40 ms, not 17 x 40 ms (which would send it to the
    # idle 150 ms backend).
    busy, slow = endpoints(clock, 1, 1)
    attempt(slow, clock, 0.15)
    starts = deque(busy.begin() for _ in range(16))
    for _ in range(100):
        clock.advance(0.0025)
        busy.succeeded(starts.popleft())
        starts.append(busy.begin())
    assert busy.in_flight == 16
    assert busy.ewma == pytest.approx(0.04, rel=0.02)  # the latency snapshots show
    assert busy.cost() == pytest.approx(0.04, rel=0.2)
    assert P2CEwma().pick([busy, slow], ctx()) is busy
    # More load than the latency was measured under still costs more, in proportion.
    for _ in range(16):
        busy.begin()
    assert busy.cost() == pytest.approx(0.04 * 33 / 16, rel=0.2)
    # One failure adds a twentieth of the penalty, not a held 100 ms.
    busy.failed(busy.begin())
    assert busy.cost() < slow.cost()


def test_p2c_ewma_is_finagles_cost_at_low_load(clock: FakeClock) -> None:
    # Latencies measured one request at a time: each request in flight is taken to
    # add one more latency of waiting (Finagle's peak EWMA times in_flight + 1).
    (e,) = endpoints(clock, 1)
    for _ in range(30):
        attempt(e, clock, 0.01)
    e.in_flight = 4
    assert e.cost() == pytest.approx(0.05, rel=0.05)


def test_p2c_ewma_counts_how_long_requests_in_flight_have_waited(clock: FakeClock) -> None:
    # `stalled` answered in 10 ms, then its next request hung. Two seconds later
    # its latency estimate (from answers, so from the past) still says 10 ms; the
    # request in flight says at least 2 s. The slower `other` gets the traffic.
    stalled, other = endpoints(clock, 1, 1)
    attempt(stalled, clock, 0.01)
    attempt(other, clock, 0.1)
    stalled.begin()
    clock.advance(2.0)
    assert stalled.ewma < 0.01
    assert stalled.cost() > 1.99
    balancer = P2CEwma(random=random.Random(4))
    assert {balancer.pick([stalled, other], ctx()) for _ in range(20)} == {other}


def test_answers_read_together_do_not_make_a_backend_look_slow(clock: FakeClock) -> None:
    # A busy client reads 11 answers of its healthy backend in one pass (each took
    # 45 ms, mostly waiting in the client's own queue) and sends the next 10. The
    # load fell 11, 10 ... 1 within that pass: dividing each latency by the load
    # left when it ended made the last answer a 45 ms "per request" peak, and the
    # next request cost 45 x 11 ms, more than the idle 120 ms backend.
    healthy, slow = endpoints(clock, 1, 1)
    attempt(slow, clock, 0.12)
    starts = [healthy.begin() for _ in range(11)]
    clock.advance(0.045)
    for start in starts:
        healthy.succeeded(start)
    for _ in range(10):
        healthy.begin()
    assert healthy.cost() == pytest.approx(0.045, rel=0.05)
    assert healthy.cost() < slow.cost()
    balancer = P2CEwma(random=random.Random(4))
    assert {balancer.pick([healthy, slow], ctx()) for _ in range(20)} == {healthy}


def test_p2c_ewma_stops_sending_to_a_stalled_backend_within_a_latency() -> None:
    # Two backends answering in 40 ms with about 16 requests in flight each (a busy
    # client). At t = 1 s `b` stops answering; nothing can tell until its requests
    # are late, and then it gets no more.
    clock = FakeClock()
    a, b = endpoints(clock, 1, 1)
    balancer = P2CEwma(random=random.Random(1))
    due: list[tuple[float, int, Endpoint, float]] = []
    stalled_picks: list[float] = []
    for n in range(800):  # one request every 2.5 ms for 2 s
        now = clock.monotonic()
        while due and due[0][0] <= now:
            _, _, done, start = heapq.heappop(due)
            done.succeeded(start)
        chosen = balancer.pick([a, b], ctx())
        start = chosen.begin()
        if chosen is b and now >= 1.0:
            stalled_picks.append(now)  # never answered
        else:
            heapq.heappush(due, (now + 0.04, n, chosen, start))
        clock.advance(0.0025)
    assert len(stalled_picks) <= 16, stalled_picks
    assert max(stalled_picks) < 1.1  # none once its requests had waited about 40 ms


def test_p2c_ewma_penalises_unknown_busy_backends(clock: FakeClock) -> None:
    known, fresh = endpoints(clock, 1, 1)
    start = known.begin()
    clock.advance(2.0)
    known.succeeded(start)
    fresh.in_flight = 1  # no latency measured yet, and one request stuck on it
    assert P2CEwma().pick([known, fresh], ctx()) is known
    fresh.in_flight = 0  # never tried: cost 0, so it gets traffic at once
    assert P2CEwma().pick([known, fresh], ctx()) is fresh


def test_peak_ewma_jumps_up_and_decays(clock: FakeClock) -> None:
    (e,) = endpoints(clock, 1)
    for latency in (0.1, 1.0):
        start = e.begin()
        clock.advance(latency)
        e.succeeded(start)
    assert e.ewma == pytest.approx(1.0)  # the peak replaced the average at once
    clock.advance(10.0)
    assert e.ewma == pytest.approx(1.0 / 2.718281828, rel=1e-3)  # decays with tau = 10 s


def test_p2c_ewma_picks_as_endpoint_cost_says(clock: FakeClock) -> None:
    # The pick computes both costs inline: it must agree with Endpoint.cost.
    states = random.Random(3)
    for _ in range(300):
        eps = endpoints(clock, *(states.choice((0.5, 1.0, 3.0)) for _ in range(3)))
        for e in eps:
            if states.random() < 0.8:
                start = e.begin()
                clock.advance(states.choice((0.0, 0.001, 0.2)))
                e.succeeded(start)
            e.in_flight = states.randrange(3)
            clock.advance(states.choice((0.0, 0.5, 30.0)))
        seed = states.random()
        draws = random.Random(seed)
        n = len(eps)
        i, j = int(draws.random() * n), int(draws.random() * (n - 1))
        a, b = eps[i], eps[j + 1 if j >= i else j]
        expected = b if b.cost() < a.cost() else a
        assert P2CEwma(random=random.Random(seed)).pick(eps, ctx()) is expected


def test_succeeded_and_failed_return_the_latency(clock: FakeClock) -> None:
    (e,) = endpoints(clock, 1)
    start = e.begin()
    clock.advance(0.25)
    assert e.succeeded(start) == pytest.approx(0.25)
    start = e.begin()
    clock.advance(0.5)
    assert e.failed(start) == pytest.approx(0.5)
    assert (e.requests, e.errors, e.in_flight) == (2, 1, 0)


def attempt(e: Endpoint, clock: FakeClock, seconds: float, ok: bool = True) -> None:
    start = e.begin()
    clock.advance(seconds)
    if ok:
        e.succeeded(start)
    else:
        e.failed(start)


def test_endpoint_histogram_counts_attempts_from_when_it_is_kept(clock: FakeClock) -> None:
    (e,) = endpoints(clock, 1)
    attempt(e, clock, 0.5)
    assert e.histogram() is None  # not kept: nothing is counted
    e.record_histogram((0.125, 0.5))
    # Binary fractions, so the fake clock's differences are exact at the bounds.
    for seconds, ok in ((0.0625, True), (0.125, False), (0.25, True), (2.0, False),
                        (0.5, True)):
        attempt(e, clock, seconds, ok)
    assert e.histogram() == ((0.125, 0.5), (2, 2, 1), 2.9375)  # bounds included
    e.record_histogram((1.0,))  # kept already: unchanged
    assert e.histogram() == ((0.125, 0.5), (2, 2, 1), 2.9375)


def test_endpoint_histogram_loses_nothing_past_its_reservoir(clock: FakeClock) -> None:
    # The histogram counts every attempt, however small the latency reservoir kept
    # for percentiles: 1,000 attempts, none lost or counted twice.
    e = Endpoint(Backend("a"), clock, reservoir=5)
    e.record_histogram((0.125, 0.5))
    expected = [0, 0, 0]
    for i in range(1000):
        seconds = (0.0625, 0.25, 1.0)[i % 3]
        attempt(e, clock, seconds, ok=i % 7 != 0)
        expected[(0.0625, 0.25, 1.0).index(seconds)] += 1
        if i % 11 == 0:
            e.histogram()
    found: Any = e.histogram()
    assert found[1] == tuple(expected)
    assert found[2] == pytest.approx(sum(n * s for n, s in zip(expected, (0.0625, 0.25, 1.0),
                                                               strict=True)))
    assert len(e.latencies()) == 5  # the reservoir stays bounded


@pytest.mark.parametrize("reservoir", [0, -1, 2.5, True])
def test_endpoint_reservoir_must_hold_a_latency(clock: FakeClock, reservoir: object) -> None:
    with pytest.raises(ml.ConfigError, match="reservoir"):
        Endpoint(Backend("a"), clock, reservoir=reservoir)  # type: ignore[arg-type]


def test_a_reweighed_endpoint_keeps_its_histogram_and_state(clock: FakeClock) -> None:
    service = Service("s", ["a"], clock=clock, outlier_detection=None)
    service._record_histograms((0.125, 0.5))
    (old,) = service.endpoints
    attempt(old, clock, 0.0625)
    attempt(old, clock, 0.25)
    service.eject("a", seconds=60.0)
    service.set_backends([Backend("a", weight=2.0), "b"])  # same address, new settings
    new, added = service.endpoints
    assert new is old  # what routing learnt of the address stays: ejection too
    assert (new.weight, new.backend.weight) == (2.0, 2.0)
    assert new.ejected_until is not None
    attempt(new, clock, 0.125)
    found: Any = new.histogram()
    assert found == ((0.125, 0.5), (2, 1, 0), 0.4375)
    assert added.histogram() == ((0.125, 0.5), (0, 0, 0), 0.0)


def test_ring_hash_is_sticky_and_spreads(clock: FakeClock) -> None:
    eps = endpoints(clock, 1, 1, 1, 1)
    ring = RingHash(key=lambda user: user)
    ring.update(eps)
    owners = {u: ring.pick(eps, ctx(f"user-{u}")).address for u in range(400)}
    assert all(ring.pick(eps, ctx(f"user-{u}")).address == owners[u] for u in range(400))
    assert all(60 < n < 140 for n in Counter(owners.values()).values())


def test_ring_hash_keeps_large_weights_shares_with_about_replicas_points(
        clock: FakeClock) -> None:
    # DNS SRV weights run to 65535: replicas * weight points made a ring of millions,
    # built on the event loop; they count relative to their power of ten.
    ring = RingHash(key=lambda user: user)
    eps = endpoints(clock, 10_000, 5_000)
    ring.update(eps)
    assert len(ring._points) == 150
    owners = Counter(ring.pick(eps, ctx(f"user-{u}")).address for u in range(3000))
    assert 1.5 < owners["a"] / owners["b"] < 2.7  # about 2: the weights' ratio
    small = RingHash(key=lambda user: user)
    small.update(endpoints(clock, 1, 2.5))
    assert len(small._points) == 350  # weights below 10 count as they are


def test_ring_hash_is_not_rebuilt_for_the_same_backends(clock: FakeClock) -> None:
    ring = RingHash(key=lambda user: user)
    eps = endpoints(clock, 1, 1)
    ring.update(eps)
    points = ring._points
    ring.update(list(eps))  # a discovery re-read: the same backends and weights
    assert ring._points is points
    eps[0].reweigh(Backend("a", weight=2.0))
    ring.update(eps)
    assert len(ring._points) == 300


def test_ring_hash_moves_only_the_lost_backends_keys(clock: FakeClock) -> None:
    eps = endpoints(clock, 1, 1, 1, 1)
    ring = RingHash(key=lambda user: user)
    ring.update(eps)
    before = {u: ring.pick(eps, ctx(u)).address for u in range(400)}
    survivors = [e for e in eps if e.address != "b"]  # b ejected: only its keys move
    after = {u: ring.pick(survivors, ctx(u)).address for u in range(400)}
    moved = {u for u in before if before[u] != after[u]}
    assert moved == {u for u in before if before[u] == "b"}


def test_ring_hash_bounds_the_load(clock: FakeClock) -> None:
    eps = endpoints(clock, 1, 1, 1)
    ring = RingHash(key=lambda k: k, load_factor=1.25)
    ring.update(eps)
    owner = ring.pick(eps, ctx("hot"))
    owner.in_flight = 10  # far above 1.25 x the average
    other = ring.pick(eps, ctx("hot"))
    assert other is not owner
    assert ring.pick(eps, ctx("hot")) is other  # the spill-over is stable too


def test_ring_hash_reads_a_header(clock: FakeClock) -> None:
    eps = endpoints(clock, 1, 1, 1)
    ring = RingHash(header="x-user")
    ring.update(eps)
    picks = {ring.pick(eps, ctx(request=httpx.Request("GET", "http://s/",
                                                       headers={"x-user": "42"}))).address
             for _ in range(20)}
    assert len(picks) == 1
    keyless = {ring.pick(eps, ctx(request=httpx.Request("GET", "http://s/"))).address
               for _ in range(50)}
    assert len(keyless) > 1  # no key: random


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"key": 3}, "key"), ({"header": ""}, "header"), ({"replicas": 0}, "replicas"),
    ({"load_factor": 1.0}, "load_factor"), ({"load_factor": "x"}, "load_factor"),
    ({"random": 3}, "random"),
])
def test_ring_hash_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"RingHash: {field}"):
        RingHash(**kwargs)


@pytest.mark.parametrize("name", sorted(BALANCERS))
def test_balancers_refuse_a_random_source_that_is_not_one(name: str) -> None:
    with pytest.raises(ml.ConfigError, match=r"random must be a random\.Random or None"):
        BALANCERS[name](random=7)


def test_balancers_by_name() -> None:
    assert set(BALANCERS) == {"round_robin", "weighted_round_robin", "random",
                              "least_requests", "p2c_ewma", "ring_hash"}
    for name in BALANCERS:
        balancer = Service("s", ["a"], balancer=name, pipeline=ml.Pipeline()).balancer
        assert getattr(balancer, "name", None) == name
    assert isinstance(Service("s", ["a"]).balancer, P2CEwma)  # the default
    with pytest.raises(ml.ConfigError, match="balancer must be one of least_requests"):
        Service("s", ["a"], balancer="fastest")
    with pytest.raises(ml.ConfigError, match="balancer must be a balancer name"):
        Service("s", ["a"], balancer=42)  # type: ignore[arg-type]


def test_a_custom_balancer_is_a_small_protocol() -> None:
    class Last:
        def pick(self, endpoints: Sequence[Endpoint], ctx: ml.CallContext) -> Endpoint:
            return endpoints[-1]

    assert isinstance(Last(), Balancer)
    mesh = Mesh([Service("s", ["a", "b", "c"], balancer=Last(), pipeline=ml.Pipeline())])
    assert {mesh.call_sync("s", lambda b: b.address) for _ in range(5)} == {"c"}


def test_failures_cost_their_latency_plus_a_bounded_penalty() -> None:
    from meshlite.routing._endpoint import DEFAULT_FAILURE_PENALTY_SECONDS, Endpoint

    clock = FakeClock()
    endpoint = Endpoint(ml.Backend("x"), clock)
    for _ in range(50):
        start = endpoint.begin()
        clock.advance(0.005)
        endpoint.failed(start)
    assert endpoint.ewma == pytest.approx(0.005)  # snapshots show the real latency
    assert endpoint.failure_share == pytest.approx(1 - 0.95 ** 50)
    # Failing fast never looks fast, and repeated failures do not grow the cost.
    assert endpoint.cost() > 0.005 + 0.9 * DEFAULT_FAILURE_PENALTY_SECONDS
    assert endpoint.cost() <= 0.005 + DEFAULT_FAILURE_PENALTY_SECONDS


def test_the_failure_penalty_is_in_proportion_to_the_failure_share(clock: FakeClock) -> None:
    # A 2 ms backend failing one attempt in ten, and a healthy 120 ms one. A failure
    # held as a 100 ms latency for the EWMA's 10 s made the flaky backend cost more
    # than the slow one after a single failure; its failures cost a tenth of the
    # penalty here, so it stays the better choice, and its latency is what it is.
    from meshlite.routing._endpoint import DEFAULT_FAILURE_PENALTY_SECONDS

    flaky, slow = endpoints(clock, 1, 1)
    attempt(slow, clock, 0.12)
    for i in range(200):
        attempt(flaky, clock, 0.002, ok=i % 10 != 9)
    assert flaky.ewma == pytest.approx(0.002)
    assert 0.05 < flaky.failure_share < 0.2
    assert flaky.cost() < 0.03 < slow.cost()
    assert flaky.cost() < 0.002 + 0.2 * DEFAULT_FAILURE_PENALTY_SECONDS
    balancer = P2CEwma(random=random.Random(2))
    assert {balancer.pick([flaky, slow], ctx()) for _ in range(50)} == {flaky}
    # Once it stops failing, its share fades within a few tens of attempts.
    for _ in range(60):
        attempt(flaky, clock, 0.002)
    assert flaky.failure_share < 0.01


def test_p2c_ewma_avoids_the_slow_backend_beside_a_flaky_one() -> None:
    # A flaky backend must not become a sink that p2c never picks: then every draw
    # pairing it with the slow backend would go to the slow one.
    latency = {"ok": 0.005, "slow": 0.2, "flaky": 0.005}
    clock, rng = FakeClock(), random.Random(1)
    service = ml.Service(
        "s", list(latency), balancer="p2c_ewma", random=random.Random(1), clock=clock,
        pipeline=ml.Pipeline(ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0),
                                      budget=None, clock=clock)),
        outlier_detection=ml.OutlierDetection(consecutive_failures=3,
                                              base_ejection_seconds=10.0))
    mesh = ml.Mesh([service], clock=clock)
    hits: Counter[str] = Counter()

    def call(backend: ml.Backend) -> str:
        hits[backend.address] += 1
        clock.advance(latency[backend.address])
        if backend.address == "flaky" and rng.random() < 1 / 3:
            raise ConnectionError("503")
        return backend.address

    for _ in range(3000):
        start = clock.monotonic()
        mesh.call_sync("s", call)
        clock.advance(max(0.0, 0.01 - (clock.monotonic() - start)))
    assert hits["slow"] < 0.01 * sum(hits.values()), hits


def test_a_stall_of_the_client_itself_does_not_hand_traffic_to_the_slow_backend() -> None:
    # 16 workers call through p2c_ewma: healthy 2 ms, slow 120 ms, flaky 2 ms
    # failing 40%. From t = 1.0 s to 1.3 s the client reads nothing (a pause of the
    # process): every request in flight then answers late, together. The slow
    # backend, with nothing in flight during the pause, kept its old estimate. Held
    # for the EWMA's 10 s, the others' 300 ms made it the cheapest, and with its
    # in-flight cost scaled by a typical load of 5, it took most of the workers.
    clock, rng = FakeClock(), random.Random(3)
    latency = {"ok": 0.002, "slow": 0.12, "flaky": 0.002}
    eps = [Endpoint(Backend(address), clock) for address in latency]
    balancer = P2CEwma(random=random.Random(7))
    due: list[tuple[float, int, Endpoint, float]] = []
    after: Counter[str] = Counter()

    def send(n: int) -> None:
        chosen = balancer.pick(eps, ctx())
        start = chosen.begin()
        if start >= 1.3:
            after[chosen.address] += 1
        heapq.heappush(due, (start + latency[chosen.address], n, chosen, start))

    for n in range(16):
        send(n)
    n = 16
    while clock.monotonic() < 3.0:
        at, _, done, start = heapq.heappop(due)
        if 1.0 <= at < 1.3:
            at = 1.3  # the client reads nothing during its pause
        clock.advance(max(0.0, at - clock.monotonic()))
        if done.address == "flaky" and rng.random() < 0.4:
            done.failed(start)
        else:
            done.succeeded(start)
        send(n)
        n += 1
    assert after["slow"] < 0.01 * sum(after.values()), after
