"""Bounded parallel batches: ``fn(item)`` for every item, at most N at once, in order.

:func:`gather` runs an async function as asyncio tasks; :func:`gather_sync` runs a
sync one on a thread pool. Both return one slot per item, in input order, holding
the item's result or the ``Exception`` it raised, so one bad item never hides the
others' results. With ``fail_fast=True`` the first failure stops the batch instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeAlias, TypeVar

from ._validate import at_least, fail

__all__ = ["DEFAULT_CONCURRENCY", "Progress", "gather", "gather_sync"]

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_CONCURRENCY = 16
"""Items in flight at once unless told otherwise."""

Progress: TypeAlias = Callable[[int, int], object]
"""``progress(done, total)``, called after each item finishes."""


def _materialise(
    owner: str, fn: object, items: object, concurrency: object, fail_fast: object,
    progress: object,
) -> list[Any]:
    """Check the arguments and return the items as a list (the iterable is read once).

    Raises:
        ConfigError: a bad argument.
    """
    if not callable(fn):
        fail(owner, "fn", fn, "a callable taking one item")
    at_least(owner, "concurrency", concurrency, 1)
    if not isinstance(fail_fast, bool):
        fail(owner, "fail_fast", fail_fast, "True or False")
    if progress is not None and not callable(progress):
        fail(owner, "progress", progress, "None or a callable progress(done, total)")
    if isinstance(items, str | bytes | bytearray):
        # Almost always a mistake: a string is an iterable of its characters.
        fail(owner, "items", items, "an iterable of items, not a string (wrap one in a list)")
    if hasattr(items, "__aiter__"):
        fail(owner, "items", items, "a (sync) iterable; collect an async iterable into a list")
    try:
        iterator = iter(items)  # type: ignore[call-overload]
    except TypeError:
        fail(owner, "items", items, "an iterable of items")
    return list(iterator)


async def gather(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    concurrency: int = DEFAULT_CONCURRENCY,
    fail_fast: bool = False,
    progress: Progress | None = None,
) -> list[R | Exception]:
    """Await ``fn(item)`` for every item, at most ``concurrency`` at once.

    ``fn`` must return an awaitable: an ``async def`` (decorated with a pipeline or
    not), or a function returning a coroutine. Sync functions belong in
    :func:`gather_sync`; to run one here, pass
    ``lambda item: asyncio.to_thread(fn, item)``.

    Args:
        fn: The function to apply to each item.
        items: Any iterable; it is read once, up front.
        concurrency: The most items in flight at once (>= 1).
        fail_fast: Stop at the first failure: items not yet started never start,
            running ones are cancelled (and awaited), and that error is raised.
        progress: Called as ``progress(done, total)`` on the event loop after each
            item finishes; an error it raises ends the batch like ``fail_fast``.

    Returns:
        One slot per item, in input order: its result, or the ``Exception`` it
        raised (without ``fail_fast``).

    Raises:
        ConfigError: a bad argument.
        TypeError: ``fn`` returned something that cannot be awaited.
        BaseException: cancellation, ``KeyboardInterrupt`` or ``SystemExit`` from an
            item propagates, after every other item is cancelled.
    """
    work = _materialise("gather", fn, items, concurrency, fail_fast, progress)
    total = len(work)
    results: list[Any] = [None] * total
    if not total:
        return results
    feed = iter(enumerate(work))
    finished = 0
    stopped = False

    async def worker() -> None:
        # Workers pull from one shared iterator; nothing awaits between taking an
        # item and starting it, so each item runs once and none starts after a stop.
        nonlocal finished, stopped
        for index, item in feed:
            if stopped:
                return
            try:
                pending = fn(item)
                if not inspect.isawaitable(pending):
                    raise _NotAwaitable(fn, pending)
                results[index] = await pending
            except Exception as error:
                if fail_fast or isinstance(error, _NotAwaitable):
                    stopped = True
                    raise
                results[index] = error
            except BaseException:
                stopped = True
                raise
            finished += 1
            if progress is not None:
                progress(finished, total)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, total))]
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((w for w in done if w.cancelled() or w.exception() is not None), None)
    finally:
        # Also on the caller's cancellation: an item that swallows it (returns, or
        # raises an Exception) must not let its worker start the next item.
        stopped = True
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    if failed is not None:
        error = failed.exception() if not failed.cancelled() else asyncio.CancelledError()
        if isinstance(error, _NotAwaitable):
            raise TypeError(str(error)) from None
        if error is not None:
            raise error
    return results


class _Skipped(Exception):
    """An item of gather_sync that was not started because the batch stopped."""


class _NotAwaitable(Exception):
    """Raised inside a worker when ``fn`` is sync; re-raised as TypeError."""

    def __init__(self, fn: object, value: object) -> None:
        super().__init__(
            f"gather: fn={fn!r} returned {value!r}, which cannot be awaited; gather "
            "needs an async function: use gather_sync for a sync one, or pass "
            "lambda item: asyncio.to_thread(fn, item)"
        )


def gather_sync(
    fn: Callable[[T], R],
    items: Iterable[T],
    concurrency: int = DEFAULT_CONCURRENCY,
    fail_fast: bool = False,
    progress: Progress | None = None,
) -> list[R | Exception]:
    """Call ``fn(item)`` for every item on a thread pool, at most ``concurrency`` at once.

    The pool has ``min(concurrency, len(items))`` threads and is shut down before
    this returns. Each item runs in a copy of the caller's context variables, so a
    call made inside a pipeline keeps its deadline (``ml.remaining()``).

    Args:
        fn: The function to apply to each item.
        items: Any iterable; it is read once, up front.
        concurrency: The most items running at once (>= 1).
        fail_fast: Stop at the first failure: items not yet started never start,
            running ones finish (threads cannot be cancelled) and are discarded, and
            that error is raised.
        progress: Called as ``progress(done, total)`` on the calling thread after
            each item finishes; an error it raises ends the batch like ``fail_fast``.

    Returns:
        One slot per item, in input order: its result, or the ``Exception`` it
        raised (without ``fail_fast``).

    Raises:
        ConfigError: a bad argument.
        BaseException: ``KeyboardInterrupt`` or ``SystemExit`` from an item
            propagates, after the pool stops.
    """
    work = _materialise("gather_sync", fn, items, concurrency, fail_fast, progress)
    total = len(work)
    results: list[Any] = [None] * total
    if not total:
        return results
    stop = threading.Event()

    def run(context: contextvars.Context, item: Any) -> Any:
        # The stop check runs on the worker thread, so a thread freed by the failing
        # item cannot start another one before the caller has seen the failure.
        if stop.is_set():
            raise _Skipped
        try:
            return context.run(fn, item)
        except Exception:
            if fail_fast:
                stop.set()
            raise
        except BaseException:
            stop.set()
            raise

    pool = ThreadPoolExecutor(max_workers=min(concurrency, total),
                              thread_name_prefix="meshlite-gather")
    try:
        slots = {pool.submit(run, contextvars.copy_context(), item): index
                 for index, item in enumerate(work)}
        finished = 0
        for future in as_completed(slots):
            error = future.exception()
            if error is None:
                results[slots[future]] = future.result()
            elif isinstance(error, _Skipped):
                continue  # the failure that stopped the batch is raised when seen
            elif isinstance(error, Exception) and not fail_fast:
                results[slots[future]] = error
            else:
                raise error
            finished += 1
            if progress is not None:
                progress(finished, total)
    finally:
        # Items not started yet never start; running ones are waited for, so no
        # thread outlives the call.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return results
