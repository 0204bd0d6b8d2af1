from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiolimiter
import pytest

import meshlite as ml
from meshlite._context import CallContext
from meshlite._events import CallRejected
from meshlite.policies._rate_limit import RateLimitWaited
from meshlite.testing import FakeClock

EPS = 1e-9


class Deadline(ml.Policy):
    """Gives each call a deadline ``seconds`` from now (ml.Timeout's job, minus the rest)."""

    kind = "deadline"

    def __init__(self, seconds: float, clock: ml.Clock) -> None:
        super().__init__()
        self.seconds = seconds
        self.clock = clock

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: CallContext) -> Any:
            ctx.tighten_deadline(self.seconds, self.clock)
            return call_next(ctx)

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        async def handle(ctx: CallContext) -> Any:
            ctx.tighten_deadline(self.seconds, self.clock)
            return await call_next(ctx)

        return handle


def check_bound(times: Sequence[float], counts: Sequence[int], rate: float, per: float,
                burst: int) -> None:
    """Admissions at each instant ``times[k]`` (``counts[k]`` of them), demand always
    exceeding the limit: every window [t_i, t_j] holds at most ``burst + rate*t/per``
    and at least ``rate*t/per - 1`` (``burst + rate*t/per - 1`` from a fresh start)."""
    for i in range(len(times)):
        total = 0
        for j in range(i, len(times)):
            total += counts[j]
            allowed = rate * (times[j] - times[i]) / per
            assert total <= burst + allowed + EPS, (i, j, total)
            assert total >= (burst if i == 0 else 0) + allowed - 1 - EPS, (i, j, total)


def try_call(fn: Callable[[], object]) -> int:
    try:
        fn()
    except ml.RateLimitedError:
        return 0
    return 1


# -- the limit itself ----------------------------------------------------------------


def test_burst_then_reject_with_retry_after(clock: FakeClock) -> None:
    fn = ml.Pipeline(ml.RateLimit(10, burst=3, mode="reject", clock=clock), service="users")
    assert [fn.call(int, i) for i in range(3)] == [0, 1, 2]
    with pytest.raises(ml.RateLimitedError) as info:
        fn.call(lambda: 3)
    err = info.value
    assert err.retry_after == pytest.approx(0.1)
    assert (err.service, err.policy) == ("users", "rate_limit")
    assert str(err) == "rate limit of 10 per 1.0 s for 'users' reached; retry in 0.100 s"
    clock.advance(0.06)
    with pytest.raises(ml.RateLimitedError) as info:
        fn.call(lambda: 3)
    assert info.value.retry_after == pytest.approx(0.04)
    clock.advance(0.04)
    assert fn.call(lambda: 4) == 4


@pytest.mark.parametrize(("rate", "burst"), [(5.0, 5), (0.5, 1), (2.5, 2)])
def test_default_burst_is_one_period(clock: FakeClock, rate: float, burst: int) -> None:
    limiter = ml.RateLimit(rate, mode="reject", clock=clock)
    assert limiter.burst == burst
    fn = ml.Pipeline(limiter)
    assert sum(try_call(lambda: fn.call(int)) for _ in range(10)) == burst


class YieldingKey:
    """A key whose hashing lets other threads run, in the middle of the GCRA update
    (under the GIL, a race there is otherwise too rare to catch)."""

    def __hash__(self) -> int:
        time.sleep(0)
        return 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, YieldingKey)


TENANT = YieldingKey()


@pytest.mark.parametrize("key", [None, lambda: TENANT], ids=["keyless", "keyed"])
def test_exact_under_threads(clock: FakeClock, key: Callable[[], object] | None) -> None:
    rate, per, burst, step, steps, workers = 50.0, 1.0, 100, 0.013, 30, 8
    limiter = ml.RateLimit(rate, per, burst, mode="reject", key=key, clock=clock)
    fn = ml.Pipeline(limiter).call
    counts = [0] * steps
    lock = threading.Lock()
    barrier = threading.Barrier(workers + 1)

    def worker() -> None:
        for i in range(steps):
            barrier.wait()
            n = sum(try_call(lambda: fn(int)) for _ in range(30))
            with lock:
                counts[i] += n
            barrier.wait()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as much as possible
    try:
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for t in threads:
            t.start()
        for _ in range(steps):
            barrier.wait()  # the workers hammer the limiter at this instant
            barrier.wait()
            clock.advance(step)
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    check_bound([i * step for i in range(steps)], counts, rate, per, burst)
    assert sum(counts) > burst  # the limit refilled between steps


async def test_exact_under_1000_tasks_reject(clock: FakeClock) -> None:
    rate, per, burst, step, steps = 200.0, 2.0, 20, 0.037, 15
    limiter = ml.RateLimit(rate, per, burst, mode="reject", clock=clock)

    @limiter
    async def call() -> int:
        await asyncio.sleep(0)
        return 1

    async def attempt() -> int:
        try:
            return await call()
        except ml.RateLimitedError:
            return 0

    counts = []
    for _ in range(steps):
        counts.append(sum(await asyncio.gather(*(attempt() for _ in range(1000)))))
        clock.advance(step)
    check_bound([i * step for i in range(steps)], counts, rate, per, burst)


async def test_1000_waiters_fifo_exact_and_each_sleeps_once(clock: FakeClock) -> None:
    rate, per, burst, n = 250.0, 0.5, 10, 1000
    limiter = ml.RateLimit(rate, per, burst, clock=clock)
    admitted: list[tuple[int, float]] = []

    @limiter
    async def call(i: int) -> None:
        admitted.append((i, clock.monotonic()))

    await asyncio.gather(*(call(i) for i in range(n)))
    assert [i for i, _ in admitted] == list(range(n))  # first come, first served
    # One sleep per waiter, straight to its own slot: no wake-ups in between.
    assert len(clock.sleeps) == n - burst
    times = [t for _, t in admitted]
    check_bound(*_group(times), rate, per, burst)
    assert times[-1] == pytest.approx((n - burst) * per / rate)


def _group(times: list[float]) -> tuple[list[float], list[int]]:
    instants: list[float] = []
    counts: list[int] = []
    for t in times:
        if instants and t - instants[-1] < EPS:
            counts[-1] += 1
        else:
            instants.append(t)
            counts.append(1)
    return instants, counts


def test_sync_wait_sleeps_until_each_slot(clock: FakeClock) -> None:
    limiter = ml.RateLimit(10, burst=2, clock=clock)
    events: list[ml.Event] = []
    limiter.add_hook(events.append)
    fn = ml.Pipeline(limiter)
    stamps = [fn.call(clock.monotonic) for _ in range(5)]
    assert stamps == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1])
    assert [e.waited for e in events if isinstance(e, RateLimitWaited)] == pytest.approx(
        [0.1, 0.1, 0.1])


def test_admitted_calls_never_sleep(clock: FakeClock) -> None:
    fn = ml.Pipeline(ml.RateLimit(1000, clock=clock))
    for _ in range(1000):
        fn.call(int)
    assert clock.sleeps == []


async def test_threads_and_tasks_share_one_quota(clock: FakeClock) -> None:
    limiter = ml.RateLimit(1, burst=4, mode="reject", clock=clock)

    async def acall() -> int:
        return 1

    assert ml.Pipeline(limiter).call(lambda: 1) == 1
    assert await ml.Pipeline(limiter).acall(acall) == 1
    await asyncio.to_thread(ml.Pipeline(limiter).call, int)
    assert await limiter(acall)() == 1
    with pytest.raises(ml.RateLimitedError):
        await limiter(acall)()


# -- waiting limits: max_wait and deadlines -----------------------------------------------


def test_max_wait_rejects_at_once(clock: FakeClock) -> None:
    fn = ml.Pipeline(ml.RateLimit(1, burst=1, max_wait=0.5, clock=clock))
    fn.call(int)
    message = r"next slot is 1\.000 s away, more than max_wait=0\.5 s; retry in 1\.000 s"
    with pytest.raises(ml.RateLimitedError, match=message) as info:
        fn.call(int)
    assert info.value.retry_after == pytest.approx(1.0)
    assert clock.sleeps == []
    clock.advance(0.5)
    fn.call(int)  # slot 0.5 s away: within max_wait, so it waits
    assert clock.sleeps == pytest.approx([0.5])


async def test_slot_past_deadline_rejected_without_sleeping(clock: FakeClock) -> None:
    limiter = ml.RateLimit(2, burst=1, clock=clock)
    events: list[ml.Event] = []
    limiter.add_hook(events.append)
    tight = ml.Pipeline(Deadline(0.3, clock), limiter)

    async def work() -> str:
        return "ok"

    assert await tight.acall(work) == "ok"
    with pytest.raises(ml.RateLimitedError, match="past the call's deadline") as info:
        await tight.acall(work)
    assert info.value.retry_after == pytest.approx(0.5)
    assert clock.sleeps == []
    rejected = [e for e in events if isinstance(e, CallRejected)]
    assert [e.reason for e in rejected] == ["rate_limited"]
    assert rejected[0].retry_after == pytest.approx(0.5)
    # The rejected call reserved nothing: a roomier deadline waits for the same slot.
    roomy = ml.Pipeline(Deadline(0.6, clock), limiter)
    assert await roomy.acall(work) == "ok"
    assert clock.sleeps == pytest.approx([0.5])


def test_sync_deadline(clock: FakeClock) -> None:
    limiter = ml.RateLimit(2, burst=1, clock=clock)
    ml.Pipeline(limiter).call(int)
    with pytest.raises(ml.RateLimitedError, match="deadline"):
        ml.Pipeline(Deadline(0.2, clock), limiter).call(int)
    ml.Pipeline(Deadline(0.5, clock), limiter).call(int)
    assert clock.sleeps == pytest.approx([0.5])


# -- per-key quotas --------------------------------------------------------------------


def test_each_key_has_its_own_quota(clock: FakeClock) -> None:
    limiter = ml.RateLimit(1, burst=2, mode="reject", key=lambda tenant, **_: tenant,
                           clock=clock)
    fn = ml.Pipeline(limiter, service="api")

    def get(tenant: str, page: int = 0) -> str:
        return tenant

    assert [fn.call(get, "a"), fn.call(get, "a", page=2)] == ["a", "a"]
    with pytest.raises(ml.RateLimitedError, match=r"for 'api' \(key 'a'\)"):
        fn.call(get, "a")
    assert [fn.call(get, "b"), fn.call(get, "b")] == ["b", "b"]
    assert limiter.tracked_keys == 2


def test_keys_bounded_by_lru(clock: FakeClock) -> None:
    limiter = ml.RateLimit(1, burst=1, mode="reject", key=lambda k: k, max_keys=10,
                           clock=clock)
    fn = ml.Pipeline(limiter).call
    fn(str, "hot")
    for k in range(1000):
        try_call(lambda k=k: fn(str, "hot"))  # type: ignore[misc]
        fn(str, k)
        assert limiter.tracked_keys <= 10
    # "hot" kept hammering, so it stayed in the table and is still limited...
    with pytest.raises(ml.RateLimitedError):
        fn(str, "hot")
    # ...while key 0 was evicted and, forgotten, starts again with a full burst.
    assert fn(str, 0) == "0"


async def test_keyed_async_paths(clock: FakeClock) -> None:
    waits = ml.RateLimit(10, burst=1, key=lambda k: k, clock=clock)
    rejects = ml.RateLimit(10, burst=1, key=lambda k: k, mode="reject", clock=clock)

    async def echo(k: str) -> str:
        return k

    assert [await waits(echo)("x") for _ in range(3)] == ["x"] * 3
    assert clock.sleeps == pytest.approx([0.1, 0.1])
    assert await rejects(echo)("x") == "x"
    with pytest.raises(ml.RateLimitedError):
        await rejects(echo)("x")
    assert await rejects(echo)("y") == "y"


def test_key_errors_propagate(clock: FakeClock) -> None:
    fn = ml.Pipeline(ml.RateLimit(1, key=lambda: 1 / 0, clock=clock))
    with pytest.raises(ZeroDivisionError):
        fn.call(int)


# -- cancellation ---------------------------------------------------------------------


async def test_cancelled_waiter_gives_its_slot_back(clock: FakeClock) -> None:
    limiter = ml.RateLimit(1, burst=1, clock=clock)

    @limiter
    async def call() -> float:
        return clock.monotonic()

    assert await call() == 0.0
    waiter = asyncio.ensure_future(call())  # reserves the slot at 1.0
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await call() == pytest.approx(1.0)  # the freed slot, not the one at 2.0


async def test_cancelled_waiter_slot_lost_when_others_queued_behind(clock: FakeClock) -> None:
    # Later waiters already sleep until fixed slots; handing the freed slot to a new
    # caller would bunch two calls together, so it is dropped (fewer calls, never more).
    limiter = ml.RateLimit(1, burst=1, clock=clock)

    @limiter
    async def call() -> float:
        return clock.monotonic()

    await call()
    first = asyncio.ensure_future(call())  # slot 1.0
    second = asyncio.ensure_future(call())  # slot 2.0
    await asyncio.sleep(0)
    first.cancel()
    assert await second == pytest.approx(2.0)
    assert await call() == pytest.approx(3.0)
    with pytest.raises(asyncio.CancelledError):
        await first


def test_interrupted_sync_waiter_gives_its_slot_back() -> None:
    class InterruptingClock(FakeClock):
        interrupt = True

        def sleep(self, seconds: float) -> None:
            if self.interrupt:
                self.interrupt = False
                raise KeyboardInterrupt
            super().sleep(seconds)

    clock = InterruptingClock()
    fn = ml.Pipeline(ml.RateLimit(1, burst=1, clock=clock))
    fn.call(int)
    with pytest.raises(KeyboardInterrupt):
        fn.call(int)
    assert fn.call(clock.monotonic) == pytest.approx(1.0)
    assert clock.sleeps == pytest.approx([1.0])


# -- events, aiolimiter, options ---------------------------------------------------------


def test_rejection_event(clock: FakeClock) -> None:
    limiter = ml.RateLimit(4, burst=1, mode="reject", clock=clock)
    events: list[ml.Event] = []
    limiter.add_hook(events.append)
    fn = ml.Pipeline(limiter, service="users")
    fn.call(int)
    with pytest.raises(ml.RateLimitedError):
        fn.call(int)
    (event,) = events
    assert isinstance(event, CallRejected)
    assert (event.policy, event.service, event.operation) == ("rate_limit", "users", "int")
    assert event.reason == "rate_limited"
    assert event.retry_after == pytest.approx(0.25)


async def test_async_reject_mode(clock: FakeClock) -> None:
    limiter = ml.RateLimit(4, burst=1, mode="reject", clock=clock)

    async def work() -> int:
        return 1

    assert await limiter(work)() == 1
    with pytest.raises(ml.RateLimitedError, match=r"retry in 0\.250 s"):
        await limiter(work)()


def test_from_aiolimiter(clock: FakeClock) -> None:
    limiter = ml.RateLimit.from_aiolimiter(aiolimiter.AsyncLimiter(5, 2), mode="reject",
                                           clock=clock)
    assert (limiter.options.rate, limiter.options.per, limiter.burst) == (5, 2, 5)
    fn = ml.Pipeline(limiter)
    assert sum(try_call(lambda: fn.call(int)) for _ in range(10)) == 5
    with pytest.raises(ml.RateLimitedError) as info:
        fn.call(int)
    assert info.value.retry_after == pytest.approx(0.4)


def test_from_aiolimiter_rejects_other_objects() -> None:
    with pytest.raises(ml.ConfigError, match=r"aiolimiter\.AsyncLimiter"):
        ml.RateLimit.from_aiolimiter(object())


def test_aiolimiter_not_imported_by_meshlite() -> None:
    code = "import sys, meshlite; assert 'aiolimiter' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_store_not_supported_yet() -> None:
    with pytest.raises(ml.ConfigError, match=r"RateLimit: store must be None.*meshlite\.state"):
        ml.RateLimit(1, store=object())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"rate": 0}, "rate"), ({"rate": -1.0}, "rate"), ({"rate": "10"}, "rate"),
     ({"rate": float("inf")}, "rate"), ({"rate": 1, "per": 0}, "per"),
     ({"rate": 1, "burst": 0}, "burst"), ({"rate": 1, "burst": 1.5}, "burst"),
     ({"rate": 1, "mode": "block"}, "mode"), ({"rate": 1, "max_wait": -1}, "max_wait"),
     ({"rate": 1, "key": "tenant"}, "key"), ({"rate": 1, "max_keys": 0}, "max_keys")],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"RateLimit: {field} must be"):
        ml.RateLimit(**kwargs)


def test_repr() -> None:
    assert repr(ml.RateLimit(100)) == "RateLimit(rate=100, per=1.0, burst=100, mode='wait')"
