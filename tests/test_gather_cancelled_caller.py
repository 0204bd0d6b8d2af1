"""gather when its caller is cancelled and an item does not let the cancellation through."""

from __future__ import annotations

import asyncio

import pytest

import meshlite as ml


async def test_an_item_swallowing_the_callers_cancellation_starts_no_other_item() -> None:
    started: list[int] = []
    running = asyncio.Semaphore(0)

    async def work(i: int) -> str:
        started.append(i)
        if task.cancelling():
            return "late"  # (without the fix: ends the test at once, not by its timeout)
        running.release()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "gave up"  # a library turning cancellation into an answer
        return "done"

    task = asyncio.ensure_future(ml.gather(work, range(6), concurrency=2))
    for _ in range(2):
        await running.acquire()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Before the fix each freed worker went on with the next item, and the caller
    # waited for every one of them.
    assert started == [0, 1]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_an_item_turning_the_callers_cancellation_into_an_error_starts_no_other_item(
) -> None:
    started: list[int] = []
    running = asyncio.Semaphore(0)

    async def work(i: int) -> str:
        started.append(i)
        if task.cancelling():
            return "late"  # (without the fix: ends the test at once, not by its timeout)
        running.release()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("aborted") from None
        return "done"

    task = asyncio.ensure_future(ml.gather(work, range(6), concurrency=3))
    for _ in range(3):
        await running.acquire()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert started == [0, 1, 2]
    assert asyncio.all_tasks() == {asyncio.current_task()}
