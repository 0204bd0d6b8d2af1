"""Background tasks: stopping one without losing the caller's own cancellation, and
keeping one alive that nobody awaits."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["cancel_and_wait", "kept"]

_KEPT: set[asyncio.Task[Any]] = set()
"""The tasks :func:`kept` started, until they end (a loop holds its tasks weakly)."""


def kept(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run ``coro`` as a task of the running loop that nobody awaits, kept alive
    until it ends (a task only the loop refers to may be collected mid-way)."""
    task = asyncio.get_running_loop().create_task(coro)
    _KEPT.add(task)
    task.add_done_callback(_KEPT.discard)
    return task


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; raise the error it ended with,
    if any other than its cancellation.

    Unlike ``task.cancel()`` then ``await task`` under
    ``contextlib.suppress(CancelledError)``, which cannot tell the task's
    cancellation from its caller's and swallowed both (the caller, cancelled while
    the task unwound, ran on as if it never was, and an ``asyncio.timeout`` around
    it did not fire), a cancellation of the caller propagates here.

    Raises:
        asyncio.CancelledError: the caller was cancelled while it waited (the task
            goes on unwinding on its own).
    """
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled():
        task.result()
