"""How an async call is held to its :class:`~meshlite.policies._timeout.Timeout`'s
deadline: three runners, one picked per policy when it is compiled.

- :func:`on_loop_timer` (the system clock): asyncio's own timeout, no extra task;
- :func:`watched` (another clock, such as a ``FakeClock``): a watcher task sleeps on
  it and cancels the call;
- :func:`abandoning` (``pessimistic=True``): the call runs in a task of its own, and
  the caller stops waiting at the deadline; abandoned tasks are kept in
  :data:`abandoned` until they finish.

Each sets the deadline with :func:`enter`, which the sync handler shares (through
:func:`left`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock, SystemClock
from .._context import TIMER_SLACK, CallContext, run_as
from .._errors import TimeoutExceeded
from .._policy import AsyncHandler

__all__ = ["Expired", "abandoned", "abandoning", "enter", "is_timeout", "left",
           "on_loop_timer", "watched"]

_log = logging.getLogger("meshlite.timeout")

abandoned: set[asyncio.Future[Any]] = set()
"""Abandoned calls (pessimistic mode), kept alive here until they finish, so the event
loop does not garbage-collect a running task, and their outcome is consumed."""

Expired = Callable[[CallContext, float], TimeoutExceeded]
Runner = Callable[[CallContext, float], Awaitable[Any]]


def left(seconds: float, outer_deadline: float, outer_clock: Clock) -> float:
    """The budget under an outer deadline: never more than ``seconds`` nor than what is
    left of it. The outer deadline may live on another clock, so time left is compared,
    not instants (as in ``CallContext.tighten_deadline``)."""
    return min(seconds, max(0.0, outer_deadline - outer_clock.monotonic()))


def enter(ctx: CallContext, seconds: float, clock: Clock) -> float:
    """Set the call's deadline on ``clock`` and return its budget; the caller saved
    ``ctx.deadline`` and ``ctx.clock`` first and restores both."""
    outer = ctx.deadline
    budget = seconds if outer is None else left(seconds, outer, ctx.clock)
    ctx.deadline = clock.monotonic() + budget
    ctx.clock = clock
    return budget


def is_timeout(error: BaseException) -> bool:
    """Whether ``error`` is a read or connect timeout: a ``TimeoutError``, or httpx's
    ``TimeoutException`` (the sync HTTP client's, which is none) when httpx is
    already imported (looked up in :data:`sys.modules`, never imported)."""
    if isinstance(error, TimeoutError):
        return True
    httpx = sys.modules.get("httpx")
    kind = getattr(httpx, "TimeoutException", None) if httpx is not None else None
    return isinstance(kind, type) and isinstance(error, kind)


def _cut(error: Exception, deadline: float, clock: Clock) -> bool:
    """Whether ``error``, raised by the call, is this Timeout's deadline having
    passed though its own timer has not fired yet: a timeout raised once the
    deadline had passed (up to :data:`~meshlite._context.TIMER_SLACK` early: a loop
    timer set for it may fire so). That happens when nothing awaited since the
    deadline passed (the loop was held, so an inner policy found no time left and
    raised at once), or when the wire's timer for the same deadline fired first."""
    return clock.monotonic() >= deadline - TIMER_SLACK and is_timeout(error)


def _reap(task: asyncio.Future[Any]) -> None:
    abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log.debug("an abandoned call finished with an error after its timeout",
                   exc_info=task.exception())


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()
    # Also when already done: _reap then retrieves an error nobody else will.
    abandoned.add(task)
    task.add_done_callback(_reap)


def on_loop_timer(call_next: AsyncHandler, seconds: float, timed_out: Expired) -> AsyncHandler:
    """The system clock: asyncio's own timeout (no extra task), in one coroutine frame."""

    async def handle(ctx: CallContext) -> Any:
        saved_deadline, saved_clock = ctx.deadline, ctx.clock
        budget = enter(ctx, seconds, SYSTEM_CLOCK)
        deadline = ctx.deadline
        try:
            if budget <= 0.0:
                raise timed_out(ctx, budget)
            scope = asyncio.timeout(budget)
            try:
                async with scope:
                    result = await call_next(ctx)
            except Exception as error:
                # asyncio.timeout turns our cancellation into TimeoutError, and only ours:
                # an outside cancel of the caller stays a CancelledError. The cause is
                # that cancellation, as on every other clock.
                if scope.expired() and isinstance(error, TimeoutError):
                    raise timed_out(ctx, budget) from (error.__cause__ or error)
                if deadline is not None and _cut(error, deadline, SYSTEM_CLOCK):
                    raise timed_out(ctx, budget) from error
                raise
            if scope.expired():  # the call swallowed the cancellation and returned late
                raise timed_out(ctx, budget)
            return result
        finally:
            ctx.deadline, ctx.clock = saved_deadline, saved_clock

    return handle


def watched(call_next: AsyncHandler, clock: Clock, timed_out: Expired) -> Runner:
    """Another clock (a FakeClock): a watcher task sleeps on it and cancels the call."""

    async def run(ctx: CallContext, budget: float) -> Any:
        task = asyncio.current_task()
        assert task is not None  # awrap handlers only run inside a task
        baseline = task.cancelling()
        fired = False

        async def watch() -> None:
            nonlocal fired
            await clock.asleep(budget)
            fired = True
            task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            result = await call_next(ctx)
        except asyncio.CancelledError as error:
            # Ours only if no other cancel request is pending (as asyncio.timeout does).
            if fired and task.uncancel() <= baseline:
                raise timed_out(ctx, budget) from error
            raise
        except Exception as error:
            if fired:
                task.uncancel()
            deadline = ctx.deadline
            if deadline is not None and _cut(error, deadline, clock):
                raise timed_out(ctx, budget) from error
            raise
        finally:
            watcher.cancel()
        if fired:
            task.uncancel()
            raise timed_out(ctx, budget)
        return result

    return run


# What the call wrote into its copy of the context that the caller goes on with (the
# backend to avoid next, a request that must not be resent, the last error...): all
# but the deadline this Timeout set (restored by the caller) and the span of a Trace
# inside, which it restores itself when the call ends.
_HANDED_BACK = tuple(n for n in CallContext.__slots__
                     if n not in ("deadline", "clock", "caller_deadline", "caller_clock",
                                  "span"))


def abandoning(call_next: AsyncHandler, clock: Clock, timed_out: Expired) -> Runner:
    """Pessimistic: run the call in its own task and stop waiting at the deadline.

    The call runs on a copy of the context, so once abandoned it still sees this
    Timeout's deadline while it unwinds (routing and breakers then count it as cut by
    the service's own deadline) though the caller has restored its own and moved on."""
    system = isinstance(clock, SystemClock)

    async def run(ctx: CallContext, budget: float) -> Any:
        twin = ctx.copy()
        inner = asyncio.ensure_future(run_as(call_next, twin))
        timer = None if system else asyncio.ensure_future(clock.asleep(budget))
        try:
            if timer is None:
                done, _ = await asyncio.wait((inner,), timeout=budget)
            else:
                done, _ = await asyncio.wait((inner, timer), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            _abandon(inner)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            for name in _HANDED_BACK:
                setattr(ctx, name, getattr(twin, name))
        if inner in done:
            error = None if inner.cancelled() else inner.exception()
            deadline = ctx.deadline
            if isinstance(error, Exception) and deadline is not None and _cut(
                    error, deadline, clock):
                raise timed_out(ctx, budget) from error
            return inner.result()
        _abandon(inner)
        raise timed_out(ctx, budget)

    return run
