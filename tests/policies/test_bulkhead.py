from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _deadline_in import DeadlineIn

import meshlite as ml
from meshlite._events import CallRejected
from meshlite.testing import FakeClock


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition other threads make true (bounded, never a timing assertion)."""
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- limiting -------------------------------------------------------------------------


def test_threads_beyond_the_limit_are_rejected() -> None:
    events: list[ml.Event] = []
    bulkhead = ml.Bulkhead(max_concurrent=2)
    bulkhead.add_hook(events.append)
    pipeline = ml.Pipeline(bulkhead, service="users")
    release = threading.Event()

    def hold() -> str:
        release.wait(10.0)
        return "done"

    threads = [threading.Thread(target=pipeline.call, args=(hold,)) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: bulkhead.running == 2)
    with pytest.raises(ml.BulkheadFullError) as info:
        pipeline.call(hold)
    assert str(info.value) == (
        "bulkhead of 'users' is full (2 running, 0 queued); "
        "lower the load or raise max_concurrent"
    )
    assert (info.value.service, info.value.policy) == ("users", "bulkhead")
    (event,) = events
    assert isinstance(event, CallRejected)
    assert (event.policy, event.service, event.reason) == ("bulkhead", "users", "bulkhead_full")
    assert event.operation is not None
    assert event.operation.endswith("hold")
    release.set()
    for t in threads:
        t.join()
    assert bulkhead.running == 0
    assert pipeline.call(hold) == "done"


async def test_tasks_beyond_the_limit_are_rejected() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=3)
    release = asyncio.Event()

    @bulkhead
    async def hold() -> int:
        await release.wait()
        return 1

    tasks = [asyncio.create_task(hold()) for _ in range(3)]
    await settle()
    assert bulkhead.running == 3
    with pytest.raises(ml.BulkheadFullError, match=r"\(3 running, 0 queued\)"):
        await hold()
    release.set()
    assert await asyncio.gather(*tasks) == [1, 1, 1]
    assert bulkhead.running == 0


async def test_queued_tasks_run_in_arrival_order() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=5)
    gates = [asyncio.Event() for _ in range(6)]
    order: list[int] = []

    @bulkhead
    async def step(i: int) -> int:
        order.append(i)
        await gates[i].wait()
        return i

    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(step(i)))
        await settle()
    assert (bulkhead.running, bulkhead.queued) == (1, 5)
    with pytest.raises(ml.BulkheadFullError, match=r"\(1 running, 5 queued\)"):
        await step(0)
    for i in range(6):
        gates[i].set()
        await settle()
    assert await asyncio.gather(*tasks) == list(range(6))
    assert order == list(range(6))
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


def test_queued_threads_run_in_arrival_order() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=4)
    pipeline = ml.Pipeline(bulkhead)
    release = threading.Event()
    order: list[int] = []

    def step(i: int) -> None:
        order.append(i)
        if i == 0:
            release.wait(10.0)

    threads = []
    for i in range(5):
        t = threading.Thread(target=pipeline.call, args=(step, i))
        t.start()
        threads.append(t)
        wait_until(lambda i=i: bulkhead.queued == i)  # type: ignore[misc]
    release.set()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


async def test_a_newcomer_never_overtakes_the_queue() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=2)
    gate = asyncio.Event()
    order: list[str] = []

    @bulkhead
    async def step(name: str) -> None:
        order.append(name)
        if name == "first":
            await gate.wait()

    first = asyncio.create_task(step("first"))
    await settle()
    queued = asyncio.create_task(step("queued"))
    await settle()
    gate.set()
    await first  # the slot went to "queued" before this newcomer arrives
    await step("newcomer")
    await queued
    assert order == ["first", "queued", "newcomer"]


# -- queue timeout and deadlines ---------------------------------------------------------


async def test_queue_timeout_on_fake_clock(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=5.0, clock=clock)
    bulkhead.add_hook(events.append)
    release = asyncio.Event()

    @bulkhead
    async def hold() -> None:
        await release.wait()

    holder = asyncio.create_task(hold())
    await settle()
    with pytest.raises(ml.BulkheadFullError, match="no slot freed within 5s") as info:
        await hold()
    assert clock.monotonic() == 5.0  # the wait ran on the fake clock, in no real time
    assert info.value.policy == "bulkhead"
    assert [e.reason for e in events if isinstance(e, CallRejected)] == ["bulkhead_queue_timeout"]
    assert bulkhead.queued == 0
    release.set()
    await holder
    assert bulkhead.running == 0


async def test_queued_task_admitted_before_the_timeout(clock: FakeClock) -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=5.0, clock=clock)
    release = asyncio.Event()

    @bulkhead
    async def hold(x: int) -> int:
        if x == 0:
            await release.wait()
        return x

    holder = asyncio.create_task(hold(0))
    await settle()
    queued = asyncio.create_task(hold(1))
    await asyncio.sleep(0)
    release.set()
    assert await queued == 1  # admitted, not timed out
    await holder
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


async def test_queue_wait_bounded_by_the_deadline(clock: FakeClock) -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=60.0, clock=clock)
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    holder = asyncio.create_task(ml.Pipeline(bulkhead).acall(hold))
    await settle()
    with pytest.raises(ml.BulkheadFullError, match="within 2s"):
        await ml.Pipeline(DeadlineIn(2.0, clock), bulkhead).acall(hold)
    assert clock.monotonic() == 2.0
    release.set()
    await holder


def test_thread_queue_timeout_with_a_real_short_wait() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=0.02)
    pipeline = ml.Pipeline(bulkhead)
    release = threading.Event()
    holder = threading.Thread(target=pipeline.call, args=(release.wait, 10.0))
    holder.start()
    wait_until(lambda: bulkhead.running == 1)
    with pytest.raises(ml.BulkheadFullError, match=r"no slot freed within 0\.02s"):
        pipeline.call(lambda: None)
    assert bulkhead.queued == 0
    release.set()
    holder.join()
    assert bulkhead.running == 0


@pytest.mark.parametrize("bound", ["queue_timeout", "deadline"])
def test_thread_waits_longer_than_a_lock_can_time_out(bound: str) -> None:
    # threading.Lock.acquire refuses timeouts above threading.TIMEOUT_MAX (about 292
    # years) with OverflowError; a valid queue_timeout or deadline that long must wait.
    long = threading.TIMEOUT_MAX * 10
    if bound == "queue_timeout":
        bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=long)
        pipeline = ml.Pipeline(bulkhead)
    else:
        bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=1)
        pipeline = ml.Pipeline(DeadlineIn(long, ml.SYSTEM_CLOCK), bulkhead)
    release = threading.Event()
    holder = threading.Thread(target=pipeline.call, args=(release.wait, 10.0))
    holder.start()
    wait_until(lambda: bulkhead.running == 1)
    results: list[object] = []
    queued = threading.Thread(target=lambda: results.append(pipeline.call(lambda: "ran")))
    queued.start()
    wait_until(lambda: bulkhead.queued == 1)
    release.set()
    holder.join()
    queued.join()
    assert results == ["ran"]
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


def test_thread_with_an_expired_deadline_is_not_queued(clock: FakeClock) -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=1)
    release = threading.Event()
    holder = threading.Thread(target=ml.Pipeline(bulkhead).call, args=(release.wait, 10.0))
    holder.start()
    wait_until(lambda: bulkhead.running == 1)
    with pytest.raises(ml.BulkheadFullError, match="within 0s"):
        ml.Pipeline(DeadlineIn(0.0, clock), bulkhead).call(lambda: None)
    release.set()
    holder.join()


# -- cancellation ---------------------------------------------------------------------------


async def test_cancelled_queued_task_leaves_the_queue() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=2)
    release = asyncio.Event()
    ran: list[str] = []

    @bulkhead
    async def step(name: str) -> None:
        ran.append(name)
        await release.wait()

    holder = asyncio.create_task(step("holder"))
    await settle()
    doomed = asyncio.create_task(step("doomed"))
    await settle()
    assert bulkhead.queued == 1
    doomed.cancel()
    await settle()
    assert bulkhead.queued == 0
    release.set()
    await holder
    assert doomed.cancelled()
    assert ran == ["holder"]
    assert bulkhead.running == 0


async def test_cancelled_running_task_frees_its_slot() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1)

    @bulkhead
    async def forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await settle()
    assert bulkhead.running == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulkhead.running == 0


async def test_task_cancelled_after_its_slot_was_handed_over_passes_it_on() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=2)
    gate = asyncio.Event()
    ran: list[str] = []

    @bulkhead
    async def step(name: str) -> None:
        ran.append(name)
        if name == "holder":
            await gate.wait()

    holder = asyncio.create_task(step("holder"))
    await settle()
    granted = asyncio.create_task(step("granted"))
    last = asyncio.create_task(step("last"))
    await settle()
    first_waiter = bulkhead._waiters[0]
    gate.set()
    await asyncio.sleep(0)  # the holder finishes and hands its slot to "granted"...
    assert first_waiter.granted
    granted.cancel()  # ...which is cancelled before it could run
    await asyncio.gather(holder, last, granted, return_exceptions=True)
    assert granted.cancelled()
    assert ran == ["holder", "last"]
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


def test_interrupted_running_thread_frees_its_slot() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ml.Pipeline(bulkhead).call(interrupted)
    assert bulkhead.running == 0


# -- sharing and stress ---------------------------------------------------------------------


async def test_threads_and_tasks_share_one_bulkhead() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=2)
    pipeline = ml.Pipeline(bulkhead)
    release = threading.Event()
    order: list[str] = []

    def sync_step() -> None:
        order.append("thread")
        release.wait(10.0)

    async def async_step() -> None:
        order.append("task")

    thread = threading.Thread(target=pipeline.call, args=(sync_step,))
    thread.start()
    await asyncio.to_thread(wait_until, lambda: bulkhead.running == 1)
    task = asyncio.create_task(pipeline.acall(async_step))
    await settle()
    assert bulkhead.queued == 1
    release.set()  # the thread hands its slot to the task, across threads
    await task
    await asyncio.to_thread(thread.join)
    assert order == ["thread", "task"]
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


async def test_counts_never_leak_under_stress() -> None:
    limit = 4
    bulkhead = ml.Bulkhead(max_concurrent=limit, max_queue=2000)
    pipeline = ml.Pipeline(bulkhead)
    inside, peak = 0, 0
    count_lock = threading.Lock()
    rng = random.Random(7)

    def enter() -> None:
        nonlocal inside, peak
        with count_lock:
            inside += 1
            peak = max(peak, inside)

    def leave() -> None:
        nonlocal inside
        with count_lock:
            inside -= 1

    async def async_work(fail: bool) -> None:
        enter()
        try:
            await asyncio.sleep(0)
            if fail:
                raise ConnectionError
        finally:
            leave()

    def sync_work() -> None:
        enter()
        try:
            time.sleep(0)
        finally:
            leave()

    def thread_main() -> None:
        for _ in range(50):
            pipeline.call(sync_work)

    threads = [threading.Thread(target=thread_main) for _ in range(8)]
    for t in threads:
        t.start()
    tasks = [asyncio.create_task(pipeline.acall(async_work, i % 7 == 0)) for i in range(1000)]
    for task in rng.sample(tasks, 100):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    assert peak <= limit
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_concurrent": 1, "max_queue": -1}, "max_queue"),
        ({"max_concurrent": 1, "queue_timeout": 0}, "queue_timeout"),
        ({"max_concurrent": 1, "queue_timeout": -1.0}, "queue_timeout"),
        ({"max_concurrent": 1, "clock": "now"}, "clock"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"Bulkhead: {field} must be"):
        ml.Bulkhead(**kwargs)


def test_repr() -> None:
    assert repr(ml.Bulkhead(32, max_queue=8, queue_timeout=0.5)) == (
        "Bulkhead(max_concurrent=32, max_queue=8, queue_timeout=0.5)"
    )
