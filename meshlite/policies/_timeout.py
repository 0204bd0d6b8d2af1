"""Timeout: a total time budget for everything inside the policy."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock, SystemClock
from .._context import CallContext, run_as
from .._errors import ConfigError, TimeoutExceeded
from .._events import TimedOut
from .._policy import AsyncHandler, Handler, Policy
from .._validate import clock_option, fail, positive

__all__ = ["DEFAULT_PESSIMISTIC", "Timeout", "TimeoutOptions"]

DEFAULT_PESSIMISTIC = False
"""Wait for a cancelled call to finish unwinding before raising."""

_log = logging.getLogger("meshlite.timeout")

# Abandoned calls (pessimistic mode) are kept alive here until they finish, so the
# event loop does not garbage-collect a running task, and their outcome is consumed.
_abandoned: set[asyncio.Future[Any]] = set()


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutOptions:
    """Validated options of :class:`Timeout`."""

    seconds: float
    pessimistic: bool = DEFAULT_PESSIMISTIC

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", positive("Timeout", "seconds", self.seconds))
        if not isinstance(self.pessimistic, bool):
            fail("Timeout", "pessimistic", self.pessimistic, "True or False")


_TimedOut = Callable[[CallContext, float], TimeoutExceeded]
_Runner = Callable[[CallContext, float], Awaitable[Any]]


def _left(seconds: float, outer_deadline: float, outer_clock: Clock) -> float:
    """The budget under an outer deadline: never more than ``seconds`` nor than what is
    left of it. The outer deadline may live on another clock, so time left is compared,
    not instants (as in ``CallContext.tighten_deadline``)."""
    return min(seconds, max(0.0, outer_deadline - outer_clock.monotonic()))


def _enter(ctx: CallContext, seconds: float, clock: Clock) -> float:
    """Set the call's deadline on ``clock`` and return its budget; the caller saved
    ``ctx.deadline`` and ``ctx.clock`` first and restores both."""
    outer = ctx.deadline
    budget = seconds if outer is None else _left(seconds, outer, ctx.clock)
    ctx.deadline = clock.monotonic() + budget
    ctx.clock = clock
    return budget


def _reap(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log.debug("an abandoned call finished with an error after its timeout",
                   exc_info=task.exception())


def _abandon(task: asyncio.Future[Any]) -> None:
    task.cancel()
    # Also when already done: _reap then retrieves an error nobody else will.
    _abandoned.add(task)
    task.add_done_callback(_reap)


def _is_timeout(error: Exception) -> bool:
    """Whether ``error`` is a read or connect timeout: a ``TimeoutError``, or httpx's
    ``TimeoutException`` (the sync HTTP client's, which is none) when httpx is
    already imported (looked up in :data:`sys.modules`, never imported)."""
    if isinstance(error, TimeoutError):
        return True
    httpx = sys.modules.get("httpx")
    kind = getattr(httpx, "TimeoutException", None) if httpx is not None else None
    return isinstance(kind, type) and isinstance(error, kind)


class Timeout(Policy):
    """Give everything inside this policy (retries included) at most ``seconds``.

    The deadline is set on the call's context, so inner policies (``Retry`` stops
    when no time is left) and the call itself (``ml.remaining()``) see it. A nested
    ``Timeout`` only ever tightens the deadline of an outer one, never extends it.

    Async calls are cancelled at the deadline. Sync calls are never run on a thread:
    they get the deadline through ``ml.remaining()`` (meshlite's HTTP transport
    honours it); a sync call that returns after the deadline raises
    ``TimeoutExceeded`` and its late result is discarded, because the caller's
    budget is the contract.

    Args:
        seconds: The budget, > 0.
        pessimistic: Async only: at the deadline, raise at once instead of waiting
            for the cancelled call to unwind (for calls that ignore cancellation).
            The abandoned call is cancelled and left to finish on its own.
        clock: The clock the deadline is measured on (default: the system clock).

    Raises:
        ConfigError: ``seconds`` is not a finite number > 0, ``pessimistic`` is not
            a bool, or (from ``wrap``) ``pessimistic=True`` is used for a sync call.
        TimeoutExceeded: (per call) the deadline passed.

    Example::

        @ml.Timeout(2.0)
        async def get_user(uid: int) -> dict: ...
    """

    kind = "timeout"

    def __init__(
        self,
        seconds: float,
        *,
        pessimistic: bool = DEFAULT_PESSIMISTIC,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.options = TimeoutOptions(seconds=seconds, pessimistic=pessimistic)
        self.clock: Clock = clock_option("Timeout", clock)

    def _timed_out(self, ctx: CallContext, budget: float) -> TimeoutExceeded:
        seconds = self.options.seconds
        if self.hooks.active:
            self._emit(TimedOut(policy=self.kind, service=ctx.service,
                                operation=ctx.operation, timeout=seconds))
        where = f"call {ctx.operation!r}"
        if ctx.service is not None:
            where += f" of service {ctx.service!r}"
        if budget < seconds:
            what = (f"ran out of time: an outer deadline left it {budget:.3g} s of its "
                    f"{seconds} s timeout; raise the outer timeout or make the call faster")
        else:
            what = f"timed out after {seconds} s; raise the timeout or make the call faster"
        return TimeoutExceeded(f"{where} {what}", service=ctx.service, policy=self.kind)

    def wrap(self, call_next: Handler) -> Handler:
        seconds, clock, timed_out = self.options.seconds, self.clock, self._timed_out
        if self.options.pessimistic:
            raise ConfigError(
                "Timeout: pessimistic=True cannot apply to a sync call: a sync call cannot "
                "be abandoned without leaving a thread behind; use an async function or "
                "pessimistic=False",
                policy=self.kind,
            )

        def handle(ctx: CallContext) -> Any:
            saved_deadline, saved_clock = ctx.deadline, ctx.clock
            budget = seconds if saved_deadline is None else _left(seconds, saved_deadline,
                                                                  saved_clock)
            deadline = ctx.deadline = clock.monotonic() + budget
            ctx.clock = clock
            try:
                if budget <= 0.0:
                    raise timed_out(ctx, budget)
                try:
                    result = call_next(ctx)
                except Exception as error:
                    if _is_timeout(error) and clock.monotonic() > deadline:
                        raise timed_out(ctx, budget) from error
                    raise
                if clock.monotonic() > deadline:
                    raise timed_out(ctx, budget)
                return result
            finally:
                ctx.deadline, ctx.clock = saved_deadline, saved_clock

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        seconds, clock, timed_out = self.options.seconds, self.clock, self._timed_out
        if self.options.pessimistic:
            run = _abandoning(call_next, clock, timed_out)
        elif isinstance(clock, SystemClock):
            return _on_loop_timer(call_next, seconds, timed_out)
        else:
            run = _watched(call_next, clock, timed_out)

        async def handle(ctx: CallContext) -> Any:
            saved_deadline, saved_clock = ctx.deadline, ctx.clock
            budget = _enter(ctx, seconds, clock)
            try:
                if budget <= 0.0:
                    raise timed_out(ctx, budget)
                return await run(ctx, budget)
            finally:
                ctx.deadline, ctx.clock = saved_deadline, saved_clock

        return handle

    def __repr__(self) -> str:
        o = self.options
        extra = ", pessimistic=True" if o.pessimistic else ""
        return f"Timeout({o.seconds!r}{extra})"


def _on_loop_timer(call_next: AsyncHandler, seconds: float, timed_out: _TimedOut) -> AsyncHandler:
    """The system clock: asyncio's own timeout (no extra task), in one coroutine frame."""

    async def handle(ctx: CallContext) -> Any:
        saved_deadline, saved_clock = ctx.deadline, ctx.clock
        budget = _enter(ctx, seconds, SYSTEM_CLOCK)
        try:
            if budget <= 0.0:
                raise timed_out(ctx, budget)
            scope = asyncio.timeout(budget)
            try:
                async with scope:
                    result = await call_next(ctx)
            except TimeoutError as error:
                # asyncio.timeout turns our cancellation into TimeoutError, and only ours:
                # an outside cancel of the caller stays a CancelledError. The cause is
                # that cancellation, as on every other clock.
                if scope.expired():
                    raise timed_out(ctx, budget) from (error.__cause__ or error)
                raise
            if scope.expired():  # the call swallowed the cancellation and returned late
                raise timed_out(ctx, budget)
            return result
        finally:
            ctx.deadline, ctx.clock = saved_deadline, saved_clock

    return handle


def _watched(call_next: AsyncHandler, clock: Clock, timed_out: _TimedOut) -> _Runner:
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
        except Exception:
            if fired:
                task.uncancel()
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


def _abandoning(call_next: AsyncHandler, clock: Clock, timed_out: _TimedOut) -> _Runner:
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
            return inner.result()
        _abandon(inner)
        raise timed_out(ctx, budget)

    return run
