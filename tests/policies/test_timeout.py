from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import meshlite as ml
from meshlite._events import TimedOut
from meshlite.policies import _timeout_async
from meshlite.testing import FakeClock


async def no_stray_tasks() -> None:
    # A cancelled helper task needs one loop turn to finish; give it a few.
    for _ in range(3):
        await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert not _timeout_async.abandoned


class Probe(ml.Policy):
    """Records the deadline an outer policy sees once the inner ones are done."""

    kind = "probe"

    def __init__(self) -> None:
        super().__init__()
        self.after: list[tuple[float | None, ml.Clock]] = []

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: ml.CallContext) -> Any:
            try:
                return call_next(ctx)
            finally:
                self.after.append((ctx.deadline, ctx.clock))

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        async def handle(ctx: ml.CallContext) -> Any:
            try:
                return await call_next(ctx)
            finally:
                self.after.append((ctx.deadline, ctx.clock))

        return handle


# -- async ---------------------------------------------------------------------


async def test_async_call_cancelled_at_deadline(clock: FakeClock) -> None:
    cancelled = []

    async def get_user() -> int:
        try:
            await clock.asleep(10.0)
        except asyncio.CancelledError:
            cancelled.append(clock.monotonic())
            raise
        return 1

    pipeline = ml.Pipeline(ml.Timeout(2.0, clock=clock), service="users")
    with pytest.raises(ml.TimeoutExceeded) as info:
        await pipeline.acall(get_user)
    assert cancelled == [2.0]
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert (info.value.service, info.value.policy) == ("users", "timeout")
    assert str(info.value) == (
        "call 'test_async_call_cancelled_at_deadline.<locals>.get_user' of service 'users' "
        "timed out after 2.0 s; raise the timeout or make the call faster"
    )
    await no_stray_tasks()


async def test_async_system_clock_cancels_for_real() -> None:
    cancelled = asyncio.Event()

    @ml.Timeout(0.02)
    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(ml.TimeoutExceeded, match=r"timed out after 0\.02 s") as info:
        await slow()
    assert cancelled.is_set()
    assert "of service" not in str(info.value)
    # The cause is the cancellation, as on a FakeClock, not asyncio.timeout's TimeoutError.
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    await no_stray_tasks()


async def test_async_success_and_own_errors_pass_through(clock: FakeClock) -> None:
    async def ok() -> int:
        await clock.asleep(1.0)
        return 7

    async def own_timeout() -> None:
        raise TimeoutError("socket")

    for timeout in (ml.Timeout(2.0, clock=clock), ml.Timeout(2.0)):
        pipeline = ml.Pipeline(timeout)
        if timeout.clock is clock:
            assert await pipeline.acall(ok) == 7
        with pytest.raises(TimeoutError, match="socket") as info:
            await pipeline.acall(own_timeout)
        assert not isinstance(info.value, ml.TimeoutExceeded)
    await no_stray_tasks()


async def test_async_late_result_after_swallowed_cancel_is_discarded(clock: FakeClock) -> None:
    async def stubborn() -> int:
        try:
            await clock.asleep(10.0)
        except asyncio.CancelledError:
            await clock.asleep(1.0)
        return 1

    with pytest.raises(ml.TimeoutExceeded):
        await ml.Pipeline(ml.Timeout(2.0, clock=clock)).acall(stubborn)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await no_stray_tasks()


async def test_nested_inner_timeout_never_extends(clock: FakeClock) -> None:
    seen = []

    async def call() -> None:
        seen.append(ml.remaining())
        await clock.asleep(10.0)

    inner = ml.Pipeline(ml.Timeout(5.0, clock=clock))

    async def outer_call() -> None:
        await inner.acall(call)

    with pytest.raises(ml.TimeoutExceeded):
        await ml.Pipeline(ml.Timeout(1.0, clock=clock)).acall(outer_call)
    assert seen == [1.0]
    assert clock.monotonic() == 1.0
    await no_stray_tasks()


async def test_nested_inner_timeout_may_tighten(clock: FakeClock) -> None:
    async def call() -> None:
        await clock.asleep(10.0)

    pipeline = ml.Pipeline(ml.Timeout(5.0, clock=clock), ml.Timeout(1.0, clock=clock))
    with pytest.raises(ml.TimeoutExceeded, match=r"after 1\.0 s"):
        await pipeline.acall(call)
    assert clock.monotonic() == 1.0
    await no_stray_tasks()


async def test_remaining_inside_async_call_and_restored_after(clock: FakeClock) -> None:
    seen = []

    async def call() -> None:
        seen.append(ml.remaining())
        await clock.asleep(0.5)
        seen.append(ml.remaining())

    probe = Probe()
    await ml.Pipeline(probe, ml.Timeout(2.0, clock=clock)).acall(call)
    assert seen == [2.0, 1.5]
    assert probe.after == [(None, ml.SYSTEM_CLOCK)]


async def test_outside_cancellation_stays_cancelled_error(clock: FakeClock) -> None:
    async def call() -> None:
        await asyncio.Event().wait()

    for timeout in (ml.Timeout(2.0, clock=clock), ml.Timeout(2.0)):
        task = asyncio.ensure_future(ml.Pipeline(timeout).acall(call))
        await clock.asleep(1.0)  # wakes before the deadline, on either clock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await no_stray_tasks()


async def test_outside_cancel_at_the_deadline_wins() -> None:
    class CancellingClock(FakeClock):
        """Cancels the caller from outside just as the deadline arrives."""

        target: asyncio.Task[Any]

        async def asleep(self, seconds: float) -> None:
            await super().asleep(seconds)
            self.target.cancel()

    clock = CancellingClock()

    async def call() -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(ml.Pipeline(ml.Timeout(1.0, clock=clock)).acall(call))
    clock.target = task
    with pytest.raises(asyncio.CancelledError):
        await task
    await no_stray_tasks()


# -- pessimistic ---------------------------------------------------------------


async def test_pessimistic_returns_at_deadline_despite_swallowed_cancel(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    async def stubborn() -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # ignores the cancellation until released
        finished.set()
        raise ValueError("late failure")

    pipeline = ml.Pipeline(ml.Timeout(1.0, pessimistic=True, clock=clock))
    with pytest.raises(ml.TimeoutExceeded):
        await pipeline.acall(stubborn)
    assert clock.monotonic() == 1.0
    assert not finished.is_set()
    assert len(_timeout_async.abandoned) == 1

    caplog.set_level(logging.DEBUG, logger="meshlite.timeout")
    release.set()
    await finished.wait()
    await no_stray_tasks()
    assert "abandoned call finished with an error" in caplog.text


async def test_pessimistic_system_clock_does_not_wait_for_unwinding() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await release.wait()

    with pytest.raises(ml.TimeoutExceeded):
        await ml.Pipeline(ml.Timeout(0.02, pessimistic=True)).acall(stubborn)
    assert not release.is_set()
    release.set()
    await no_stray_tasks()


async def test_pessimistic_success_error_and_outside_cancel(clock: FakeClock) -> None:
    pipeline = ml.Pipeline(ml.Timeout(2.0, pessimistic=True, clock=clock))

    async def ok() -> int:
        await clock.asleep(1.0)
        return 3

    async def fails() -> None:
        raise KeyError("k")

    async def forever() -> None:
        await asyncio.Event().wait()

    assert await pipeline.acall(ok) == 3
    with pytest.raises(KeyError):
        await pipeline.acall(fails)
    task = asyncio.ensure_future(pipeline.acall(forever))
    await clock.asleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await no_stray_tasks()


async def test_pessimistic_abandoned_call_keeps_its_deadline(clock: FakeClock) -> None:
    # The caller restores its own deadline at once; the abandoned call, still
    # unwinding, must go on seeing this Timeout's: that it ran out of its own time is
    # what routing and breakers count as the backend's slowness.
    release, finished = asyncio.Event(), asyncio.Event()
    seen: list[tuple[float | None, str | None]] = []

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # slow to unwind
            ctx = ml.current_context()
            assert ctx is not None
            seen.append((ml.remaining(), ctx.out_of_time()))
            finished.set()
            raise

    with pytest.raises(ml.TimeoutExceeded):
        await ml.Pipeline(ml.Timeout(1.0, pessimistic=True, clock=clock)).acall(stubborn)
    release.set()
    await finished.wait()
    assert seen == [(0.0, "own")]
    await no_stray_tasks()


async def test_pessimistic_timeouts_eject_a_hanging_backend(clock: FakeClock) -> None:
    async def call(backend: ml.Backend) -> str:
        if backend.address == "hangs":
            await asyncio.Event().wait()
        return backend.address

    service = ml.Service(
        "s", backends=["hangs", "ok"], balancer="round_robin",
        pipeline=ml.Pipeline(ml.Timeout(1.0, pessimistic=True, clock=clock)),
        outlier_detection=ml.OutlierDetection(consecutive_failures=2,
                                              max_ejection_percent=50))
    async with ml.Mesh([service]) as mesh:
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(await mesh.call("s", call))
            except ml.TimeoutExceeded:
                outcomes.append("timeout")
            for _ in range(3):
                await asyncio.sleep(0)
            assert not _timeout_async.abandoned  # the abandoned attempt has unwound
        assert sorted(outcomes) == ["ok", "ok", "timeout", "timeout"]  # in turn
        health = mesh.health()["s"]
        assert {b.address: b.status for b in health.backends} == {"hangs": "ejected",
                                                                  "ok": "up"}


async def test_pessimistic_timeouts_open_a_breaker_inside(clock: FakeClock) -> None:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=4, min_calls=2, open_seconds=30.0)
    pipeline = ml.Pipeline(ml.Timeout(1.0, pessimistic=True, clock=clock), breaker)

    async def hangs() -> None:
        await asyncio.Event().wait()

    for _ in range(2):
        with pytest.raises(ml.TimeoutExceeded):
            await pipeline.acall(hangs)
        await no_stray_tasks()  # the abandoned call has unwound through the breaker
    assert breaker.state == "open"


@pytest.mark.parametrize("late", ["error", "result"])
async def test_pessimistic_late_completion_gives_back_what_it_held(clock: FakeClock,
                                                                   late: str) -> None:
    # The abandoned call goes on holding its bulkhead slot and its backend's in-flight
    # count while it runs (it still loads the backend), and gives both back when it
    # ends after the deadline; the breaker records the outcome it ends with.
    release, finished = asyncio.Event(), asyncio.Event()
    bulkhead = ml.Bulkhead(max_concurrent=1)
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=1, open_seconds=30.0)

    async def stubborn(backend: ml.Backend) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # ignores the cancellation until released
        finished.set()
        if late == "error":
            raise ValueError("late failure")
        return "late result"

    pipeline = ml.Pipeline(ml.Timeout(1.0, pessimistic=True, clock=clock), breaker, bulkhead)
    async with ml.Mesh([ml.Service("s", ["b"], pipeline=pipeline)]) as mesh:
        with pytest.raises(ml.TimeoutExceeded):
            await mesh.call("s", stubborn)
        assert (bulkhead.running, mesh.snapshot()["s"].in_flight) == (1, 1)
        with pytest.raises(ml.BulkheadFullError):
            await mesh.call("s", stubborn)  # the abandoned call still runs
        release.set()
        await finished.wait()
        for _ in range(3):  # the abandoned task's last steps
            await asyncio.sleep(0)
        assert not _timeout_async.abandoned
        assert (bulkhead.running, mesh.snapshot()["s"].in_flight) == (0, 0)
        assert mesh.snapshot()["s"].backends[0].errors == (1 if late == "error" else 0)
        assert breaker.state == ("open" if late == "error" else "closed")


def test_pessimistic_refused_for_sync_calls() -> None:
    with pytest.raises(ml.ConfigError, match="without leaving a thread behind") as info:
        ml.Timeout(1.0, pessimistic=True)(lambda: 1)
    assert "pessimistic=False" in str(info.value)
    assert info.value.policy == "timeout"


# -- sync ----------------------------------------------------------------------


def test_sync_remaining_inside_call(clock: FakeClock) -> None:
    seen = []

    def call() -> int:
        seen.append(ml.remaining())
        clock.advance(0.5)
        seen.append(ml.remaining())
        return 5

    probe = Probe()
    assert ml.Pipeline(probe, ml.Timeout(2.0, clock=clock)).call(call) == 5
    assert seen == [2.0, 1.5]
    assert probe.after == [(None, ml.SYSTEM_CLOCK)]


def test_sync_late_result_raises(clock: FakeClock) -> None:
    def slow() -> int:
        clock.sleep(3.0)
        return 1

    with pytest.raises(ml.TimeoutExceeded, match=r"service 'users' timed out after 2\.0 s"):
        ml.Pipeline(ml.Timeout(2.0, clock=clock), service="users").call(slow)


def test_sync_deadline_already_passed_never_calls(clock: FakeClock) -> None:
    calls = []
    inner = ml.Pipeline(ml.Timeout(5.0, clock=clock))

    def outer() -> None:
        clock.advance(1.0)  # the whole outer budget is spent here
        inner.call(calls.append, 1)

    with pytest.raises(ml.TimeoutExceeded, match=r"an outer deadline left it 0 s of its 5\.0"):
        ml.Pipeline(ml.Timeout(1.0, clock=clock)).call(outer)
    assert calls == []


def test_sync_errors_after_deadline(clock: FakeClock) -> None:
    pipeline = ml.Pipeline(ml.Timeout(1.0, clock=clock))

    def fails_late(error: Exception) -> None:
        clock.sleep(2.0)
        raise error

    with pytest.raises(ValueError, match="bad"):
        pipeline.call(fails_late, ValueError("bad"))
    original = TimeoutError("read timed out")
    with pytest.raises(ml.TimeoutExceeded) as info:
        pipeline.call(fails_late, original)
    assert info.value.__cause__ is original

    def fails_early() -> None:
        raise TimeoutError("own")

    with pytest.raises(TimeoutError, match="own") as early:
        pipeline.call(fails_early)
    assert not isinstance(early.value, ml.TimeoutExceeded)


def test_sync_socket_timeout_at_the_deadline_under_a_fake_clock() -> None:
    # A blocking read the call bounded by the deadline waits real seconds, during
    # which a FakeClock stands still: its timeout is still the deadline's (a
    # TimeoutExceeded, as on the system clock), not the client's own ReadTimeout.
    # A client timeout shorter than the budget stays the client's.
    import httpx

    from meshlite.testing import FakeBackend

    clock = FakeClock()
    with FakeBackend(hang=True) as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline(
            ml.Timeout(0.3, clock=clock)))], clock=clock)
        with mesh.http_sync("users") as client, pytest.raises(ml.TimeoutExceeded):
            client.get("/x")
        mesh.close()
        mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline(
            ml.Timeout(5.0, clock=clock)))], clock=clock)
        with mesh.http_sync("users", timeout=0.2) as client, \
                pytest.raises(httpx.ReadTimeout):  # the client's own, 0.2 s of 5
            client.get("/x")
        mesh.close()
    assert clock.monotonic() == 0.0  # nothing moved it


# -- events and options ----------------------------------------------------------


async def test_timed_out_event(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    timeout = ml.Timeout(2.0, clock=clock)
    timeout.add_hook(events.append)
    pipeline = ml.Pipeline(timeout, service="users")

    async def ok() -> None:
        return None

    async def slow() -> None:
        await clock.asleep(5.0)

    await pipeline.acall(ok)
    assert events == []
    with pytest.raises(ml.TimeoutExceeded):
        await pipeline.acall(slow)
    (event,) = events
    assert isinstance(event, TimedOut)
    assert (event.policy, event.service, event.timeout) == ("timeout", "users", 2.0)
    assert event.operation is not None
    assert event.operation.endswith("slow")


def test_repr() -> None:
    assert repr(ml.Timeout(2)) == "Timeout(2.0)"
    assert repr(ml.Timeout(1.5, pessimistic=True)) == "Timeout(1.5, pessimistic=True)"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"seconds": 0}, "seconds"), ({"seconds": -1.0}, "seconds"),
     ({"seconds": float("nan")}, "seconds"), ({"seconds": float("inf")}, "seconds"),
     ({"seconds": "2"}, "seconds"), ({"seconds": True}, "seconds"),
     ({"seconds": 1.0, "pessimistic": "yes"}, "pessimistic")],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"Timeout: {field} must be"):
        ml.Timeout(**kwargs)
