"""The callers queued in a :class:`~meshlite.Bulkhead`: a thread blocked on a lock, or
a task awaiting a future of its loop. The call that frees a slot wakes the first
one (``wake()``), from whichever thread it runs on, and the slot is then theirs
(``granted``).
"""

from __future__ import annotations

import asyncio
import threading

from .._clock import acquire_within

__all__ = ["TaskWaiter", "ThreadWaiter", "Waiter"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ThreadWaiter:
    """A queued thread: blocks on a lock that the releasing caller unlocks."""

    __slots__ = ("_lock", "granted")

    def __init__(self) -> None:
        self.granted = False
        # A forked child never waits on it: Bulkhead's after_fork empties the queue.
        self._lock = threading.Lock()  # fork: queued
        self._lock.acquire()

    def wake(self) -> bool:
        self.granted = True
        self._lock.release()
        return True

    def wait(self, timeout: float | None) -> bool:
        return acquire_within(self._lock, timeout)


class TaskWaiter:
    """A queued task: awaits a future of its loop, resolved from whichever thread
    frees the slot."""

    __slots__ = ("future", "granted", "loop", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.granted = False
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.thread = threading.get_ident()

    def wake(self) -> bool:
        self.granted = True
        try:
            if threading.get_ident() == self.thread:
                _resolve(self.future)
            else:
                self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # the loop is closed: no task is left to take the slot
            self.granted = False
            return False
        return True


Waiter = ThreadWaiter | TaskWaiter
"""A queued caller of either kind."""
