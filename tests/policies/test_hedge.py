from __future__ import annotations

import asyncio
from typing import Any

import pytest

import meshlite as ml
from meshlite.policies._hedge import HedgeStarted
from meshlite.testing import FakeClock


def hedge_index() -> int:
    """0 for the primary attempt, n for hedge n (read from the current context)."""
    ctx = ml.current_context()
    assert ctx is not None
    return ctx.hedge


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def forever() -> None:
    # Slow attempts wait on an event, not on a long FakeClock sleep: FakeClock lets
    # the earliest sleeper jump ahead even while other tasks are still runnable.
    await asyncio.Event().wait()


async def test_slow_primary_loses_to_fast_hedge_and_is_cancelled(clock: FakeClock) -> None:
    cleaned: list[int] = []

    @ml.Hedge(0.1, clock=clock)
    async def call() -> str:
        index = hedge_index()
        try:
            if index == 0:
                await forever()
            await clock.asleep(0.05)
            return f"attempt {index}"
        finally:
            cleaned.append(index)

    assert await call() == "attempt 1"
    assert sorted(cleaned) == [0, 1]  # the primary ran its finally: cancelled and awaited
    assert clock.monotonic() == pytest.approx(0.15)
    assert other_tasks() == set()


async def test_fast_primary_starts_no_hedge(clock: FakeClock) -> None:
    calls: list[int] = []
    hedge = ml.Hedge(0.1, clock=clock)
    events: list[ml.Event] = []
    hedge.add_hook(events.append)

    @hedge
    async def call() -> int:
        calls.append(hedge_index())
        await clock.asleep(0.05)
        return 7

    assert await call() == 7
    assert calls == [0]
    assert events == []
    assert other_tasks() == set()


async def test_hedges_start_one_delay_apart(clock: FakeClock) -> None:
    started: list[tuple[int, float]] = []
    hedge = ml.Hedge(0.1, max_hedges=2, clock=clock)
    events: list[ml.Event] = []
    hedge.add_hook(events.append)

    @hedge
    async def call() -> int:
        index = hedge_index()
        started.append((index, clock.monotonic()))
        if index < 2:
            await forever()
        return index

    assert await call() == 2
    assert started == [(0, 0.0), (1, pytest.approx(0.1)), (2, pytest.approx(0.2))]
    assert [(e.attempt, e.reason) for e in events if isinstance(e, HedgeStarted)] == [
        (2, "delay"), (3, "delay")]


async def test_all_fail_raises_last_error_with_note(clock: FakeClock) -> None:
    failed = [asyncio.Event() for _ in range(3)]

    @ml.Hedge(0.1, max_hedges=2, clock=clock)
    async def call() -> None:
        index = hedge_index()
        if index < 2:  # fail in reverse order: hedge 2, hedge 1, then the primary
            await failed[index + 1].wait()
        failed[index].set()
        raise ConnectionError(f"attempt {index}")

    with pytest.raises(ConnectionError, match="attempt 0") as info:
        await call()
    note = "\n".join(info.value.__notes__)
    assert "all 3 attempts failed" in note
    assert "primary: ConnectionError('attempt 0')" in note
    assert "hedge 1" in note
    assert "hedge 2" in note
    assert other_tasks() == set()


async def test_failure_starts_next_hedge_without_waiting(clock: FakeClock) -> None:
    hedge = ml.Hedge(5.0, clock=clock)
    events: list[ml.Event] = []
    hedge.add_hook(events.append)

    @hedge
    async def call() -> str:
        if hedge_index() == 0:
            raise ConnectionError("primary down")
        return "hedge"

    assert await call() == "hedge"
    assert clock.monotonic() == 0.0  # the 5 s delay was never waited
    assert [(e.attempt, e.reason) for e in events if isinstance(e, HedgeStarted)] == [
        (2, "error")]


async def test_error_not_matching_on_is_final(clock: FakeClock) -> None:
    cleaned: list[int] = []

    @ml.Hedge(0.1, on=ConnectionError, clock=clock)
    async def call() -> str:
        index = hedge_index()
        try:
            if index == 1:
                await clock.asleep(0.05)
                raise ValueError("bad request")
            await forever()
            return "primary"
        finally:
            cleaned.append(index)

    with pytest.raises(ValueError, match="bad request"):
        await call()
    assert sorted(cleaned) == [0, 1]
    assert other_tasks() == set()


async def test_each_attempt_has_its_own_context(clock: FakeClock) -> None:
    seen: dict[int, ml.CallContext] = {}

    async def inner(ctx: ml.CallContext) -> int:
        index = ctx.hedge
        seen[index] = ctx
        ctx.backend = f"backend-{index}"  # what routing would do for its attempt
        ctx.attempt = 40 + index
        if index == 0:
            await forever()
        return index

    handler = ml.Hedge(0.1, clock=clock).awrap(inner)
    ctx = ml.CallContext(print, (), {}, "op", service="users")
    ctx.attempt = 1
    ctx.tried = []
    assert await handler(ctx) == 1
    assert seen[0] is ctx
    assert seen[1] is not ctx
    assert seen[1].service == "users"
    assert seen[1].operation == "op"
    assert seen[1].hedge == 1
    assert seen[1].tried is ctx.tried  # shared for routing
    assert ctx.hedge == 0
    assert ctx.attempt == 40  # only the primary touched the caller's context...
    assert ctx.backend == "backend-1"  # ...but it records who answered


async def test_outer_cancellation_cancels_every_attempt(clock: FakeClock) -> None:
    cleaned: list[int] = []
    running = asyncio.Event()

    @ml.Hedge(0.1, max_hedges=2, clock=clock)
    async def call() -> None:
        index = hedge_index()
        try:
            if index == 2:
                running.set()
            await forever()
        finally:
            cleaned.append(index)

    task = asyncio.ensure_future(call())
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cleaned) == [0, 1, 2]
    assert other_tasks() == set()


async def test_cancelled_before_first_delay(clock: FakeClock) -> None:
    cleaned: list[int] = []

    @ml.Hedge(5.0, clock=clock)
    async def call() -> None:
        try:
            await forever()
        finally:
            cleaned.append(hedge_index())

    task = asyncio.ensure_future(call())
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [0]
    assert other_tasks() == set()


async def test_system_clock_path() -> None:
    # The system clock waits on the loop's own timer: a tiny real delay.
    @ml.Hedge(0.001)
    async def call() -> int:
        if hedge_index() == 0:
            await forever()
        return 1

    assert await call() == 1
    assert other_tasks() == set()


async def test_remaining_deadline_seen_inside_hedge(clock: FakeClock) -> None:
    deadlines: list[float | None] = []

    async def inner(ctx: ml.CallContext) -> None:
        deadlines.append(ml.remaining())
        if ctx.hedge == 0:
            await forever()

    ctx = ml.CallContext(print, (), {}, "op")
    ctx.tighten_deadline(2.0, clock)
    await ml.Hedge(0.5, clock=clock).awrap(inner)(ctx)
    assert deadlines[1] == pytest.approx(1.5)


async def test_winning_hedge_leaves_no_cancellation_behind(clock: FakeClock) -> None:
    @ml.Hedge(0.1, clock=clock)
    async def call() -> int:
        if hedge_index() == 0:
            await forever()
        return 1

    for _ in range(3):
        assert await call() == 1
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the cancel used to stop the primary was undone
    await asyncio.sleep(0)  # and no stray CancelledError is pending for this task


async def test_primary_swallowing_cancellation(clock: FakeClock) -> None:
    @ml.Hedge(0.1, clock=clock)
    async def call() -> str:
        if hedge_index() == 0:
            try:
                await forever()
            except asyncio.CancelledError:
                return "primary swallowed it"
        return "hedge"

    assert await call() == "hedge"  # the hedge won first: the decision stands
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_final_error_from_hedge_stops_the_primary(clock: FakeClock) -> None:
    cleaned: list[int] = []

    @ml.Hedge(0.1, max_hedges=2, on=ConnectionError, clock=clock)
    async def call() -> str:
        index = hedge_index()
        try:
            if index == 1:
                raise PermissionError("denied")
            await forever()
            return "never"
        finally:
            cleaned.append(index)

    with pytest.raises(PermissionError, match="denied"):
        await call()
    assert sorted(cleaned) == [0, 1]  # no second hedge: the error was final
    assert other_tasks() == set()


async def test_outer_timeout_still_works() -> None:
    cleaned: list[int] = []

    @ml.Hedge(0.001)
    async def call() -> None:
        try:
            await forever()
        finally:
            cleaned.append(hedge_index())

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # real time: the loop's own timeout machinery
            await call()
    assert sorted(cleaned) == [0, 1]
    assert other_tasks() == set()


def test_sync_function_is_a_config_error() -> None:
    with pytest.raises(ml.ConfigError, match="Hedge: hedging needs an async function"):
        @ml.Hedge(0.1)
        def call() -> int:
            return 1
    with pytest.raises(ml.ConfigError, match="async"):
        ml.Hedge(0.1).wrap(lambda ctx: None)


def test_a_sync_call_of_a_hedged_service_names_the_service_and_the_async_calls() -> None:
    # It said "decorate an async def (or use pipeline.acall)": no help to a caller of
    # mesh.http_sync() or mesh.call_sync, who wrote neither.
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"],
                               pipeline=ml.Pipeline(ml.Hedge(0.1)))])
    for call in (lambda: mesh.call_sync("users", lambda backend: 1),
                 lambda: mesh.http_sync("users").get("/")):
        with pytest.raises(ml.ConfigError) as raised:
            call()
        message = str(raised.value)
        assert message.startswith("service 'users' cannot be called synchronously")
        assert "mesh.call or mesh.http() from async code" in message
        assert (raised.value.service, raised.value.policy) == ("users", "hedge")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"delay": -1.0}, "delay"), ({"delay": "1"}, "delay"), ({"delay": float("inf")}, "delay"),
     ({"delay": 0.1, "max_hedges": 0}, "max_hedges"),
     ({"delay": 0.1, "max_hedges": 1.5}, "max_hedges"),
     ({"delay": 0.1, "on": 3}, "on")],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"Hedge: {field}"):
        ml.Hedge(**kwargs)


def test_repr_and_zero_delay() -> None:
    assert repr(ml.Hedge(0, max_hedges=3)) == "Hedge(delay=0.0, max_hedges=3)"


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("primary_first", [True, False], ids=["primary-failed", "primary-running"])
async def test_a_hedge_ending_cancelled_on_its_own_is_final(primary_first: bool) -> None:
    # The hedge awaits a future that someone else cancels, so it ends cancelled without
    # the caller or the policy asking. Cancellation propagates, as for the primary;
    # before, with the primary already failed, the call waited for ever.
    doomed = asyncio.get_running_loop().create_future()
    hedge_running, fail_primary = asyncio.Event(), asyncio.Event()
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await fail_primary.wait()
            raise ConnectionError("primary")
        hedge_running.set()
        await doomed
        return "hedge"

    policy = ml.Hedge(0.0, max_hedges=1)
    task = asyncio.ensure_future(ml.Pipeline(policy).acall(attempt))
    await hedge_running.wait()
    if primary_first:
        fail_primary.set()
        await turns()
        assert not task.done()  # waiting for the hedge
    doomed.cancel()
    await turns()
    assert task.done()
    with pytest.raises(asyncio.CancelledError, match="hedge 1 ended cancelled"):
        task.result()
    assert calls == 2
    fail_primary.set()
