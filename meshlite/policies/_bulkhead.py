"""Bulkhead: at most ``max_concurrent`` calls at once, a bounded FIFO queue behind.

The queue holds waiters (:mod:`meshlite.policies._bulkhead_waiters`): a thread
blocked on a lock or a task awaiting a future, woken by the call that frees a slot.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from .._context import CallContext
from .._errors import BulkheadFullError
from .._events import CallRejected
from .._fork import after_fork_in_child, fork_safe
from .._policy import AsyncHandler, Handler, Policy
from .._validate import at_least, fail, optional_positive
from ._bulkhead_waiters import TaskWaiter, ThreadWaiter, Waiter

__all__ = [
    "DEFAULT_BULKHEAD_MAX_QUEUE",
    "DEFAULT_BULKHEAD_QUEUE_TIMEOUT",
    "Bulkhead",
    "BulkheadOptions",
]

DEFAULT_BULKHEAD_MAX_QUEUE = 0
"""No queue: a call that finds every slot taken is rejected at once."""

DEFAULT_BULKHEAD_QUEUE_TIMEOUT: float | None = None
"""Queued calls wait for a slot as long as their deadline allows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadOptions:
    """Validated options of :class:`Bulkhead`."""

    max_concurrent: int
    max_queue: int = DEFAULT_BULKHEAD_MAX_QUEUE
    queue_timeout: float | None = DEFAULT_BULKHEAD_QUEUE_TIMEOUT

    def __post_init__(self) -> None:
        at_least("Bulkhead", "max_concurrent", self.max_concurrent, 1)
        at_least("Bulkhead", "max_queue", self.max_queue, 0)
        object.__setattr__(
            self,
            "queue_timeout",
            optional_positive("Bulkhead", "queue_timeout", self.queue_timeout),
        )


class Bulkhead(Policy):
    """Let at most ``max_concurrent`` calls run at once; queue up to ``max_queue``.

    One Bulkhead may be shared by threads and tasks: one count under one lock, and
    queued callers of either kind are handed freed slots in arrival order (a slot
    goes straight to the next waiter, so a newcomer never overtakes the queue). A
    queued call waits at most ``queue_timeout``, and never past its deadline. A
    cancelled queued task leaves the queue; a cancelled running one frees its slot.

    Args:
        max_concurrent: Calls allowed to run at the same time.
        max_queue: Calls allowed to wait for a slot; more are rejected at once.
        queue_timeout: Longest wait for a slot, in seconds (``None``: the deadline's).
        clock: The clock async queue waits are timed on (default: the system clock).
            Threads wait on a lock with a real timeout.

    Raises:
        ConfigError: an option is out of range.
        BulkheadFullError: at call time, when no slot is free and the queue is full,
            or no slot freed in time.

    Example::

        @ml.Bulkhead(max_concurrent=32, max_queue=64, queue_timeout=0.5)
        async def get_user(uid: int) -> dict: ...
    """

    kind = "bulkhead"

    def __init__(
        self,
        max_concurrent: int,
        max_queue: int = DEFAULT_BULKHEAD_MAX_QUEUE,
        queue_timeout: float | None = DEFAULT_BULKHEAD_QUEUE_TIMEOUT,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.options = BulkheadOptions(
            max_concurrent=max_concurrent, max_queue=max_queue, queue_timeout=queue_timeout
        )
        if clock is not None and not isinstance(clock, Clock):
            fail("Bulkhead", "clock", clock, "a meshlite Clock or None")
        self._clock: Clock = clock or SYSTEM_CLOCK
        self._lock = fork_safe(threading.Lock())
        self._running = 0
        self._waiters: deque[Waiter] = deque()
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: every slot free, no queue (emptied in place: compiled
        handlers hold it; the lock is released by ``fork_safe``). The parent's calls
        and waiters are its threads', which never end here (a call of the thread
        that forked ends in the child, and its release is not counted below zero)."""
        self._running = 0
        self._waiters.clear()

    @property
    def running(self) -> int:
        """Calls running through the bulkhead now."""
        return self._running

    @property
    def queued(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiters)

    # -- the policy contract ---------------------------------------------------------

    def wrap(self, call_next: Handler) -> Handler:
        lock, waiters, limit = self._lock, self._waiters, self.options.max_concurrent
        policy, release, queue = self, self._release, self._queue

        def handle(ctx: CallContext) -> Any:
            with lock:
                admitted = policy._running < limit and not waiters
                if admitted:
                    policy._running += 1
            if not admitted:
                queue(ctx)
            try:
                return call_next(ctx)
            finally:
                release()

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        lock, waiters, limit = self._lock, self._waiters, self.options.max_concurrent
        policy, release, queue = self, self._release, self._aqueue

        async def handle(ctx: CallContext) -> Any:
            with lock:
                admitted = policy._running < limit and not waiters
                if admitted:
                    policy._running += 1
            if not admitted:
                await queue(ctx)
            try:
                return await call_next(ctx)
            finally:
                release()

        return handle

    # -- slots -----------------------------------------------------------------------

    def _release(self) -> None:
        with self._lock:
            waiters = self._waiters
            while waiters:
                if waiters.popleft().wake():
                    return  # the slot changed hands; the count stays
            if self._running:  # 0: a call running when this child was forked
                self._running -= 1

    def _join(self, ctx: CallContext, waiter: Waiter, timeout: float | None,
              by_deadline: bool) -> bool:
        """Take a slot (True) or join the queue (False); raises when the queue is full."""
        waited: float | None = None
        with self._lock:
            if self._running < self.options.max_concurrent and not self._waiters:
                self._running += 1
                return True
            if len(self._waiters) < self.options.max_queue:
                if timeout is None or timeout > 0:
                    self._waiters.append(waiter)
                    return False
                waited = 0.0  # the deadline has passed already
        # Raised outside the lock: hooks run while the error is built.
        raise self._full(ctx, waited, by_deadline)

    def _leave(self, waiter: Waiter) -> bool:
        """Leave the queue; True when a slot was handed over meanwhile (it is ours)."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def _wait_bound(self, ctx: CallContext) -> tuple[float | None, bool]:
        """The longest wait for a slot, and whether the call's deadline sets it."""
        timeout, left = self.options.queue_timeout, ctx.remaining()
        if left is None or (timeout is not None and timeout <= left):
            return timeout, False
        return left, True

    def _queue(self, ctx: CallContext) -> None:
        timeout, by_deadline = self._wait_bound(ctx)
        waiter = ThreadWaiter()
        if self._join(ctx, waiter, timeout, by_deadline):
            return
        try:
            granted = waiter.wait(timeout)
        except BaseException:
            if self._leave(waiter):
                self._release()
            raise
        if not granted and not self._leave(waiter):
            raise self._full(ctx, timeout, by_deadline)

    async def _aqueue(self, ctx: CallContext) -> None:
        timeout, by_deadline = self._wait_bound(ctx)
        waiter = TaskWaiter(asyncio.get_running_loop())
        if self._join(ctx, waiter, timeout, by_deadline):
            return
        try:
            if timeout is None:
                await waiter.future
            else:
                await self._await_or_time_out(waiter.future, timeout)
        except BaseException:
            if self._leave(waiter):
                self._release()
            raise
        if not waiter.granted and not self._leave(waiter):
            raise self._full(ctx, timeout, by_deadline)

    async def _await_or_time_out(self, future: asyncio.Future[None], seconds: float) -> None:
        # The timer sleeps on the injected clock, so FakeClock tests never wait.
        timer = asyncio.ensure_future(self._clock.asleep(seconds))
        try:
            await asyncio.wait((future, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()

    def _full(self, ctx: CallContext, waited: float | None,
              by_deadline: bool = False) -> BulkheadFullError:
        name = ctx.service or ctx.operation
        state = f"({self._running} running, {len(self._waiters)} queued)"
        if waited is None:
            reason = "bulkhead_full"
            message = (f"bulkhead of {name!r} is full {state}; "
                       "lower the load or raise max_concurrent")
        else:
            # A wait cut by the deadline names it: queue_timeout had no part in it.
            reason = "bulkhead_queue_timeout"
            bound, raise_ = (("the call's deadline", "the call's timeout") if by_deadline
                             else ("queue_timeout", "queue_timeout"))
            message = (f"bulkhead of {name!r} is full {state} and no slot freed within "
                       f"{_seconds(waited)}s of queueing ({bound}); lower the load, or "
                       f"raise max_concurrent or {raise_}")
        if self.hooks.active:
            self._emit(CallRejected(policy=self.kind, service=ctx.service,
                                    operation=ctx.operation, reason=reason))
        return BulkheadFullError(message, service=ctx.service, policy=self.kind)

    def __repr__(self) -> str:
        o = self.options
        return (f"Bulkhead(max_concurrent={o.max_concurrent!r}, max_queue={o.max_queue!r}, "
                f"queue_timeout={o.queue_timeout!r})")


def _seconds(value: float) -> str:
    """``0.099996`` as ``0.1``: a wait bounded by a deadline is a float's remainder."""
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"
