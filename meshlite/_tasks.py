"""Stopping a background task without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


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
