from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

import meshlite as ml
from meshlite.policies._adaptive import ConcurrencyLimitChanged
from meshlite.testing import FakeClock

# -- a deterministic queueing simulation ----------------------------------------------
#
# A service runs CAPACITY calls in parallel with latency BASE; past that, calls queue:
# latency = BASE + K * max(0, in_flight - CAPACITY), with K = BASE / CAPACITY (each
# extra call waits 1/CAPACITY of a service time, as in a real queue). Clients call
# back to back and, when rejected, retry after BACKOFF. The loop below decides when
# each call starts and ends by advancing the FakeClock; the policy measures latency
# through clock.monotonic(). Coroutines are driven by hand, without an event loop:
# awaiting Suspend hands control back to the loop until the call's end time.

CAPACITY = 20
BASE = 0.010
K = BASE / CAPACITY
BACKOFF = 0.2
WINDOW = 0.025  # updates every 25 ms of simulated time keep the simulation short


class Suspend:
    def __await__(self) -> Generator[None, None, None]:
        yield


@dataclass
class Sim:
    policy: ml.AdaptiveConcurrency
    clock: FakeClock
    clients: int
    in_flight: int = 0
    latency: float = 0.0
    rejections: int = 0
    limits: list[tuple[float, int]] = field(default_factory=list)
    events: list[ConcurrencyLimitChanged] = field(default_factory=list)

    async def service(self) -> str:
        self.in_flight += 1
        self.latency = BASE + K * max(0, self.in_flight - CAPACITY)
        try:
            await Suspend()
        finally:
            self.in_flight -= 1
        return "ok"

    def run(self, seconds: float) -> None:
        self.policy.add_hook(self._record)
        handler = self.policy.awrap(lambda ctx: self.service())
        seq = itertools.count()
        queue: list[tuple[float, int, Coroutine[Any, Any, Any] | None]] = [
            (0.0, next(seq), None) for _ in range(self.clients)]
        next_trace = 0.0
        while queue and queue[0][0] <= seconds:
            at, _, call = heapq.heappop(queue)
            self.clock.advance(at - self.clock.monotonic())
            while next_trace <= at:
                self.limits.append((next_trace, self.policy.limit))
                next_trace += 0.5
            if call is not None:  # the call ends now
                with pytest.raises(StopIteration):
                    call.send(None)
                heapq.heappush(queue, (at, next(seq), None))
                continue
            limit = self.policy.limit
            call = handler(ml.CallContext(print, (), {}, "sim", service="sim"))
            rejection = ""
            try:
                call.send(None)
            except ml.BulkheadFullError as error:
                rejection = str(error)
            if rejection:
                assert self.policy.in_flight >= limit  # rejected only at the limit
                assert f"limit of {limit} calls in flight" in rejection
                self.rejections += 1
                heapq.heappush(queue, (at + BACKOFF, next(seq), None))
                continue
            assert self.policy.in_flight <= limit  # never admitted past the limit
            heapq.heappush(queue, (at + self.latency, next(seq), call))
        for _, _, call in queue:  # drain: everything in flight finishes
            if call is not None:
                with pytest.raises(StopIteration):
                    call.send(None)
        assert self.policy.in_flight == 0
        assert self.in_flight == 0

    def _record(self, event: ml.Event) -> None:
        if isinstance(event, ConcurrencyLimitChanged):
            self.events.append(event)

    def settled(self, after: float) -> list[int]:
        return [limit for at, limit in self.limits if at >= after]


def equilibrium(tolerance: float = 1.0) -> float:
    """The limit at which the gradient rule stops moving in this service:
    latency = tolerance * no_load / (1 - 1/sqrt(L)), and latency = BASE * L / CAPACITY."""
    limit = float(CAPACITY)
    for _ in range(50):
        limit = CAPACITY * tolerance / (1 - 1 / math.sqrt(limit))
    return limit


# Stated band for "converges near CAPACITY": the documented equilibrium for this
# service is 1.25 x CAPACITY at tolerance 1 (the sqrt(limit) headroom keeps a little
# queue on purpose); the limit must settle within 0.8 to 1.6 x CAPACITY.
LOW, HIGH = 0.8 * CAPACITY, 1.6 * CAPACITY


@pytest.mark.parametrize(("initial", "clients"), [(2, 60), (400, 250)])
def test_gradient_converges_near_capacity(clock: FakeClock, initial: int, clients: int) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=initial, window=WINDOW, clock=clock)
    sim = Sim(policy, clock, clients)
    sim.run(4.0)
    settled = sim.settled(after=2.5)
    assert all(LOW <= limit <= HIGH for limit in settled), settled
    assert abs(sum(settled) / len(settled) - equilibrium()) <= 0.15 * CAPACITY
    assert sim.rejections > 0
    assert policy.no_load_rtt == pytest.approx(BASE, rel=0.05)


@pytest.mark.parametrize(("initial", "clients"), [(2, 60), (400, 250)])
def test_vegas_converges_near_capacity(clock: FakeClock, initial: int, clients: int) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=initial, algorithm="vegas", window=WINDOW,
                                    clock=clock)
    sim = Sim(policy, clock, clients)
    sim.run(4.0)
    settled = sim.settled(after=2.5)
    assert all(LOW <= limit <= HIGH for limit in settled), settled


def test_probes_repeat_and_restore_the_limit(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=CAPACITY, probe_interval=1.0, window=WINDOW,
                                    clock=clock)
    sim = Sim(policy, clock, 60)
    sim.run(4.5)
    reasons = [e.reason for e in sim.events]
    assert reasons.count("probe") >= 3
    assert reasons.count("probe_done") >= 3
    for probe, done in itertools.pairwise(sim.events):
        if probe.reason == "probe" and done.reason == "probe_done":
            assert done.old == probe.new
            assert done.new == probe.old  # back to the limit from before the probe
            assert probe.new <= math.isqrt(probe.old) + 1


def test_a_probe_of_instant_calls_sets_no_no_load_latency(clock: FakeClock) -> None:
    # A probe whose calls took no time on the clock (a FakeClock nobody advanced, a
    # coarse clock) must not set no_load to 0: every later window would then look
    # infinitely queued (gradient 0.5) and sink the limit at a steady latency.
    policy = ml.AdaptiveConcurrency(initial_limit=4, min_limit=1, max_limit=8,
                                    window=0.05, min_samples=2, probe_samples=2,
                                    probe_interval=1000.0, clock=clock)
    call = ml.Pipeline(policy)(lambda: "ok")
    for _ in range(3):  # the first call starts the probe, the next two are its samples
        call()
    assert policy.no_load_rtt is None  # the probe is over, with nothing learned

    def slow() -> str:
        clock.advance(0.03)
        return "ok"

    for _ in range(3):
        ml.Pipeline(policy).call(slow)
    assert policy.no_load_rtt == pytest.approx(0.03)  # from the first real window
    assert policy.limit == 4


def test_limit_changed_events_track_the_limit(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=2, window=WINDOW, clock=clock)
    sim = Sim(policy, clock, 60)
    sim.run(2.0)
    assert sim.events
    assert all(e.old != e.new for e in sim.events)
    for before, after in itertools.pairwise(sim.events):
        assert after.old == before.new
    assert sim.events[-1].new == policy.limit


# -- admission, release and errors ------------------------------------------------------


def test_rejects_beyond_the_limit_sync(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=2, min_limit=1, clock=clock)
    results: list[Any] = []

    def inner(ctx: ml.CallContext) -> str:
        if len(results) < 2:  # nested calls while the outer ones are in flight
            results.append(policy.in_flight)
            try:
                return handler(ctx)
            except ml.BulkheadFullError as error:
                results.append(error)
                return "rejected"
        return "ok"

    handler = policy.wrap(inner)
    assert handler(ml.CallContext(print, (), {}, "op", service="users")) == "rejected"
    assert results[:2] == [1, 2]
    error = results[2]
    assert isinstance(error, ml.BulkheadFullError)
    assert isinstance(error, ml.RejectedError)
    assert error.policy == "adaptive_concurrency"
    assert error.service == "users"
    assert "the limit of 2 calls in flight" in str(error)
    assert policy.in_flight == 0


def test_rejection_event(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=1, clock=clock)
    events: list[ml.Event] = []
    policy.add_hook(events.append)
    handler = policy.wrap(lambda ctx: handler(ctx))
    with pytest.raises(ml.BulkheadFullError):
        handler(ml.CallContext(print, (), {}, "op"))
    assert [getattr(e, "reason", None) for e in events] == ["concurrency_limit"]


def test_errors_and_cancellation_release_the_slot(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=5, clock=clock)

    @policy
    def fails() -> None:
        raise ConnectionError

    for _ in range(20):
        with pytest.raises(ConnectionError):
            fails()
    assert policy.in_flight == 0

    @policy
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert policy.in_flight == 0


async def test_async_cancellation_releases_the_slot(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=5, clock=clock)
    started = asyncio.Event()

    @policy
    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(slow())
    await started.wait()
    assert policy.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert policy.in_flight == 0


async def test_async_rejects_beyond_the_limit(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=3, clock=clock)
    gate = asyncio.Event()

    @policy
    async def call() -> str:
        await gate.wait()
        return "ok"

    tasks = [asyncio.ensure_future(call()) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ok") == 3
    assert sum(isinstance(r, ml.BulkheadFullError) for r in results) == 2
    assert policy.in_flight == 0


def test_timeouts_are_samples_failures_are_not(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=4, min_samples=1, window=0.001,
                                    probe_interval=None, clock=clock)

    def fast_failure(ctx: ml.CallContext) -> None:
        clock.advance(0.0001)
        raise ConnectionError

    failing = policy.wrap(fast_failure)
    for _ in range(5):
        with pytest.raises(ConnectionError):
            failing(ml.CallContext(print, (), {}, "op"))
    assert policy.no_load_rtt is None  # a fast failure teaches nothing about latency

    def timed_out(ctx: ml.CallContext) -> None:
        clock.advance(0.5)
        raise ml.TimeoutExceeded("late")

    for _ in range(3):
        with pytest.raises(ml.TimeoutExceeded):
            policy.wrap(timed_out)(ml.CallContext(print, (), {}, "op"))
    assert policy.no_load_rtt == pytest.approx(0.5)


async def test_async_calls_cut_by_a_timeout_above_are_samples(clock: FakeClock) -> None:
    # The documented order puts the Timeout above the limiter: an async call cut at
    # its deadline reaches the limiter as a cancellation, not TimeoutExceeded. It is a
    # timeout all the same (a lower bound of its latency), as it is for a sync call
    # and for breakers; a cancellation from elsewhere still teaches nothing.
    policy = ml.AdaptiveConcurrency(initial_limit=4, min_samples=1, window=0.001,
                                    probe_interval=None, clock=clock)

    async def hangs() -> None:
        await clock.asleep(100.0)

    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(ml.Pipeline(ml.Timeout(0.5, clock=clock), policy).acall(
        waits))
    await started.wait()
    clock.advance(0.25)
    task.cancel()  # before the deadline: the caller went away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert policy.no_load_rtt is None
    for _ in range(3):
        with pytest.raises(ml.TimeoutExceeded):
            await ml.Pipeline(ml.Timeout(0.5, clock=clock), policy).acall(hangs)
    assert policy.no_load_rtt == pytest.approx(0.5)
    assert policy.in_flight == 0


def test_threads_never_leak_counts() -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=8, min_limit=8, max_limit=8)
    outcomes: list[str] = []
    lock = threading.Lock()

    @policy
    def work(i: int) -> int:
        if i % 7 == 0:
            raise ValueError
        return i

    def client() -> None:
        for i in range(300):
            try:
                work(i)
                outcome = "ok"
            except ml.BulkheadFullError:
                outcome = "rejected"
            except ValueError:
                outcome = "error"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 2400
    assert outcomes.count("rejected") == 0  # 8 threads never exceed a limit of 8
    assert policy.in_flight == 0


def test_app_limited_traffic_leaves_the_limit_alone(clock: FakeClock) -> None:
    policy = ml.AdaptiveConcurrency(initial_limit=100, min_samples=1, window=0.01,
                                    probe_interval=None, clock=clock)

    def slow(ctx: ml.CallContext) -> None:
        clock.advance(1.0 if policy.no_load_rtt else 0.01)  # latency way up...

    handler = policy.wrap(slow)
    for _ in range(50):
        handler(ml.CallContext(print, (), {}, "op"))  # ...but one call at a time
    assert policy.limit == 100


# -- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"min_limit": 0}, "min_limit"), ({"initial_limit": 0}, "initial_limit"),
     ({"initial_limit": 5, "min_limit": 10}, "initial_limit"),
     ({"max_limit": 10, "initial_limit": 20}, "max_limit"),
     ({"initial_limit": 2.5}, "initial_limit"), ({"algorithm": "aimd"}, "algorithm"),
     ({"tolerance": 0.9}, "tolerance"), ({"tolerance": "x"}, "tolerance"),
     ({"smoothing": 0.0}, "smoothing"), ({"smoothing": 1.5}, "smoothing"),
     ({"queue_size": -1}, "queue_size"), ({"queue_size": "4"}, "queue_size"),
     ({"window": 0}, "window"), ({"min_samples": 0}, "min_samples"),
     ({"probe_interval": 0}, "probe_interval"), ({"probe_samples": 0}, "probe_samples"),
     ({"random": 7}, "random")],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"AdaptiveConcurrency: {field} must be"):
        ml.AdaptiveConcurrency(**kwargs)


def test_defaults_and_repr() -> None:
    policy = ml.AdaptiveConcurrency()
    assert policy.limit == 20
    assert policy.in_flight == 0
    assert policy.options.smoothing == 0.2
    assert ml.AdaptiveConcurrency(algorithm="vegas").options.smoothing == 1.0
    assert repr(policy) == (
        "AdaptiveConcurrency(algorithm='gradient', limit=20, min_limit=1, max_limit=1000)")
    assert ml.AdaptiveConcurrency(queue_size=4).options.queue_size == 4.0
