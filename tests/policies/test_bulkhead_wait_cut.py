"""Bulkhead under overload: a queued call cut by its deadline is told so."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from _deadline_in import DeadlineIn

import meshlite as ml
from meshlite._events import CallRejected
from meshlite.testing import FakeClock


async def _held(bulkhead: ml.Bulkhead) -> tuple[asyncio.Event, asyncio.Task[Any]]:
    """A task holding ``bulkhead``'s one slot until the event returned is set."""
    release = asyncio.Event()
    holder = asyncio.create_task(ml.Pipeline(bulkhead, service="users").acall(release.wait))
    for _ in range(5):
        await asyncio.sleep(0)
    return release, holder


def _held_by_thread(bulkhead: ml.Bulkhead) -> tuple[threading.Event, threading.Thread]:
    """A thread holding ``bulkhead``'s one slot until the event returned is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10.0)

    holder = threading.Thread(target=ml.Pipeline(bulkhead).call, args=(hold,))
    holder.start()
    started.wait(10.0)
    return release, holder


async def test_a_wait_cut_by_the_deadline_names_the_deadline(clock: FakeClock) -> None:
    # No queue_timeout at all: advising to raise it would send the reader nowhere.
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=4, clock=clock)
    rejected: list[object] = []
    bulkhead.add_hook(rejected.append)
    release, holder = await _held(bulkhead)
    pipeline = ml.Pipeline(DeadlineIn(2.0, clock), bulkhead, service="users")
    with pytest.raises(ml.BulkheadFullError) as caught:
        await pipeline.acall(release.wait)
    message = str(caught.value)
    assert message == ("bulkhead of 'users' is full (1 running, 0 queued) and no slot freed "
                       "within 2s of queueing (the call's deadline); lower the load, or "
                       "raise max_concurrent or the call's timeout")
    assert [e.reason for e in rejected if isinstance(e, CallRejected)] == [
        "bulkhead_queue_timeout"]
    release.set()
    await holder
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


async def test_a_wait_cut_by_queue_timeout_names_queue_timeout(clock: FakeClock) -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=4, queue_timeout=0.5, clock=clock)
    release, holder = await _held(bulkhead)
    pipeline = ml.Pipeline(DeadlineIn(2.0, clock), bulkhead, service="users")
    with pytest.raises(ml.BulkheadFullError) as caught:
        await pipeline.acall(release.wait)
    assert str(caught.value).endswith(
        "no slot freed within 0.5s of queueing (queue_timeout); lower the load, or raise "
        "max_concurrent or queue_timeout")
    release.set()
    await holder


def test_a_thread_cut_by_the_deadline_names_the_deadline(clock: FakeClock) -> None:
    # The thread waits 0.05 real seconds on its lock (the bound read on the fake clock).
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=4)
    release, holder = _held_by_thread(bulkhead)
    with pytest.raises(ml.BulkheadFullError) as caught:
        ml.Pipeline(DeadlineIn(0.05, clock), bulkhead, service="reports").call(lambda: None)
    assert str(caught.value).endswith(
        "no slot freed within 0.05s of queueing (the call's deadline); lower the load, "
        "or raise max_concurrent or the call's timeout")
    release.set()
    holder.join()
    assert (bulkhead.running, bulkhead.queued) == (0, 0)


def test_an_expired_deadline_is_named_too(clock: FakeClock) -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=4, queue_timeout=5.0)
    release, holder = _held_by_thread(bulkhead)
    with pytest.raises(ml.BulkheadFullError, match=r"within 0s of queueing \(the call's "
                                                   r"deadline\)"):
        ml.Pipeline(DeadlineIn(0.0, clock), bulkhead).call(lambda: None)
    release.set()
    holder.join()


class Elapse(ml.Policy):
    """Lets a little time pass on a fake clock, as the layers above a Bulkhead do."""

    kind = "elapse"

    def __init__(self, seconds: float, clock: FakeClock) -> None:
        super().__init__()
        self.seconds, self.clock = seconds, clock

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: ml.CallContext) -> Any:
            self.clock.advance(self.seconds)
            return call_next(ctx)

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        async def handle(ctx: ml.CallContext) -> Any:
            self.clock.advance(self.seconds)
            return await call_next(ctx)

        return handle


async def test_the_deadline_wait_is_shown_rounded(clock: FakeClock) -> None:
    # A Timeout(0.1) leaves 0.099996 s by the time the call queues: shown as 0.1.
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=4, clock=clock)
    release = asyncio.Event()
    holder = asyncio.create_task(ml.Pipeline(bulkhead).acall(release.wait))
    for _ in range(5):
        await asyncio.sleep(0)
    pipeline = ml.Pipeline(DeadlineIn(0.1, clock), Elapse(4e-6, clock), bulkhead)
    with pytest.raises(ml.BulkheadFullError, match=r"within 0\.1s of queueing"):
        await pipeline.acall(release.wait)
    release.set()
    await holder
