from __future__ import annotations

import asyncio
import contextvars
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import meshlite as ml


class InFlight:
    """Counts items running at once (thread-safe) and remembers the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


# -- async -------------------------------------------------------------------------


async def test_order_kept_and_concurrency_bounded_under_random_latency() -> None:
    rng = random.Random(5)
    yields = [rng.randint(0, 20) for _ in range(200)]
    flight = InFlight()

    async def work(i: int) -> int:
        with flight:
            for _ in range(yields[i]):  # a random latency, in loop turns
                await asyncio.sleep(0)
        return i * i

    results = await ml.gather(work, range(200), concurrency=7)
    assert results == [i * i for i in range(200)]
    assert flight.most == 7
    assert flight.now == 0


async def test_failures_fill_their_slots() -> None:
    async def work(i: int) -> int:
        await asyncio.sleep(0)
        if i % 3 == 0:
            raise ValueError(f"item {i}")
        return i

    results = await ml.gather(work, range(7), concurrency=2)
    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        "ValueError", 1, 2, "ValueError", 4, 5, "ValueError"]
    assert str(results[3]) == "item 3"


async def test_exception_returned_as_value_is_a_result() -> None:
    async def work(i: int) -> Exception:
        return KeyError(i)

    results = await ml.gather(work, [1], fail_fast=True)
    assert isinstance(results[0], KeyError)


async def test_fail_fast_cancels_running_and_never_starts_the_rest() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        if i == 2:
            await asyncio.sleep(0)
            raise ConnectionError("item 2")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    with pytest.raises(ConnectionError, match="item 2"):
        await ml.gather(work, range(50), concurrency=4, fail_fast=True)
    assert sorted(started) == [0, 1, 2, 3]
    assert sorted(cancelled) == [0, 1, 3]
    assert other_tasks() == set()


async def test_progress_reported_after_each_item() -> None:
    calls: list[tuple[int, int]] = []

    async def work(i: int) -> int:
        if i == 1:
            raise ValueError
        return i

    await ml.gather(work, range(4), concurrency=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


async def test_progress_error_ends_the_batch() -> None:
    def progress(done: int, total: int) -> None:
        raise RuntimeError("progress broke")

    async def work(i: int) -> int:
        await asyncio.sleep(0)
        return i

    with pytest.raises(RuntimeError, match="progress broke"):
        await ml.gather(work, range(10), concurrency=2, progress=progress)
    assert other_tasks() == set()


async def test_empty_input() -> None:
    calls: list[Any] = []

    async def work(i: int) -> int:
        return i

    assert await ml.gather(work, [], progress=lambda *a: calls.append(a)) == []
    assert calls == []


async def test_generator_read_once_and_pipeline_decorated_fn() -> None:
    reads: list[int] = []

    def items() -> Iterator[int]:
        for i in range(5):
            reads.append(i)
            yield i

    @ml.Fallback(-1)
    async def work(i: int) -> int:
        if i == 4:
            raise ConnectionError
        return i

    assert await ml.gather(work, items(), concurrency=2) == [0, 1, 2, 3, -1]
    assert reads == [0, 1, 2, 3, 4]


async def test_sync_function_is_rejected() -> None:
    calls: list[int] = []

    def sync(i: int) -> int:
        calls.append(i)
        return i

    with pytest.raises(TypeError, match="gather_sync"):
        await ml.gather(sync, [1, 2, 3], concurrency=3)  # type: ignore[arg-type]
    assert calls == [1]  # found out on the first item; no other item started
    assert other_tasks() == set()


async def test_lambda_returning_coroutine_and_to_thread() -> None:
    async def work(i: int) -> int:
        return i + 1

    assert await ml.gather(lambda i: work(i), [1, 2]) == [2, 3]
    assert await ml.gather(lambda i: asyncio.to_thread(abs, i), [-1, -2]) == [1, 2]


async def test_outer_cancellation_cancels_every_item() -> None:
    cancelled: list[int] = []
    running = asyncio.Semaphore(0)

    async def work(i: int) -> None:
        running.release()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    task = asyncio.ensure_future(ml.gather(work, range(10), concurrency=3))
    for _ in range(3):
        await running.acquire()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == [0, 1, 2]
    assert other_tasks() == set()


# -- sync --------------------------------------------------------------------------


def test_sync_order_kept_and_concurrency_bounded() -> None:
    rng = random.Random(9)
    delays = [rng.uniform(0, 0.002) for _ in range(60)]
    flight = InFlight()
    threads: set[int] = set()
    barrier = threading.Barrier(4, timeout=10)

    def work(i: int) -> int:
        with flight:
            threads.add(threading.get_ident())
            if i < 4:
                barrier.wait()  # the first four overlap: the bound is reached
            time.sleep(delays[i])  # real threads racing is the point here
        return -i

    assert ml.gather_sync(work, range(60), concurrency=4) == [-i for i in range(60)]
    assert flight.most == 4
    assert len(threads) <= 4


def test_sync_pool_sized_to_items_and_shut_down() -> None:
    threads: set[str] = set()

    def work(i: int) -> int:
        threads.add(threading.current_thread().name)
        return i

    before = threading.active_count()
    assert ml.gather_sync(work, [1, 2], concurrency=16) == [1, 2]
    assert len(threads) <= 2
    assert all(name.startswith("meshlite-gather") for name in threads)
    assert threading.active_count() == before


def test_sync_failures_fill_their_slots() -> None:
    def work(i: int) -> int:
        if i == 1:
            raise ValueError("one")
        return i

    results = ml.gather_sync(work, [0, 1, 2], concurrency=2)
    assert results[0] == 0
    assert results[2] == 2
    assert isinstance(results[1], ValueError)


def test_sync_fail_fast_never_starts_the_rest() -> None:
    started: list[int] = []
    one_running = threading.Event()
    release = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        if i == 0:
            one_running.wait(10)  # item 1 is running when item 0 fails...
            raise ConnectionError("item 0")
        one_running.set()
        release.wait(10)  # ...and still running a little after
        return i

    threading.Timer(0.05, release.set).start()
    with pytest.raises(ConnectionError, match="item 0"):
        ml.gather_sync(work, range(20), concurrency=2, fail_fast=True)
    assert sorted(started) == [0, 1]


def test_sync_progress_on_calling_thread() -> None:
    calls: list[tuple[int, int, str]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total, threading.current_thread().name))

    ml.gather_sync(abs, [-1, -2, -3], concurrency=2, progress=progress)
    assert [(d, t) for d, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert {name for _, _, name in calls} == {threading.current_thread().name}


def test_sync_empty_input() -> None:
    assert ml.gather_sync(abs, []) == []


def test_sync_base_exception_propagates() -> None:
    def work(i: int) -> int:
        if i == 0:
            raise KeyboardInterrupt
        return i

    with pytest.raises(KeyboardInterrupt):
        ml.gather_sync(work, range(5), concurrency=1)


def test_sync_items_see_callers_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    assert ml.gather_sync(lambda _: var.get(), [1, 2]) == ["caller", "caller"]


# -- bad input ---------------------------------------------------------------------


async def _agen() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"concurrency": 0}, "concurrency"), ({"concurrency": 1.5}, "concurrency"),
     ({"concurrency": True}, "concurrency"), ({"items": 5}, "items"),
     ({"items": "abc"}, "items"), ({"items": _agen()}, "items"), ({"fn": 3}, "fn"),
     ({"fail_fast": "yes"}, "fail_fast"), ({"progress": 3}, "progress")],
)
async def test_bad_input(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"fn": abs, "items": [1], **kwargs}
    with pytest.raises(ml.ConfigError, match=f"gather_sync: {field} must be"):
        ml.gather_sync(**args)

    async def work(i: int) -> int:
        return i

    args["fn"] = kwargs.get("fn", work)
    with pytest.raises(ml.ConfigError, match=f"gather: {field} must be"):
        await ml.gather(**args)
    if isinstance(args["items"], AsyncIterator):
        await args["items"].aclose()  # type: ignore[attr-defined]
