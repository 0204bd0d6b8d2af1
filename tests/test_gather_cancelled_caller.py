"""gather when its caller is cancelled and an item does not let the cancellation through."""

from __future__ import annotations

import asyncio

import pytest

import meshlite as ml


@pytest.mark.parametrize(("answer", "concurrency"), [
    ("returns", 2),  # a library turning cancellation into an answer
    ("raises", 3),  # or into an error of its own
])
async def test_an_item_not_letting_the_callers_cancellation_through_starts_no_other_item(
        answer: str, concurrency: int) -> None:
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
            if answer == "raises":
                raise ConnectionError("aborted") from None
            return "gave up"
        return "done"

    task = asyncio.ensure_future(ml.gather(work, range(6), concurrency=concurrency))
    for _ in range(concurrency):
        await running.acquire()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Before the fix each freed worker went on with the next item, and the caller
    # waited for every one of them.
    assert started == list(range(concurrency))
    assert asyncio.all_tasks() == {asyncio.current_task()}
