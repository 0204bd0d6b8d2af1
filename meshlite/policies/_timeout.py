"""Timeout: a total time budget for everything inside the policy.

The policy, its options and its sync handler; how an async call is held to the
deadline (three runners) is in :mod:`~meshlite.policies._timeout_async`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .._clock import Clock, SystemClock
from .._context import CallContext
from .._errors import ConfigError, TimeoutExceeded
from .._events import TimedOut
from .._policy import AsyncHandler, Handler, Policy
from .._validate import clock_option, fail, positive
from ._timeout_async import abandoning, enter, is_timeout, left, on_loop_timer, watched

_EARLY = 0.005
"""Seconds a socket's wait may end before its timeout (the system rounds it)."""

__all__ = ["DEFAULT_PESSIMISTIC", "Timeout", "TimeoutOptions"]

DEFAULT_PESSIMISTIC = False
"""Wait for a cancelled call to finish unwinding before raising."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutOptions:
    """Validated options of :class:`Timeout`."""

    seconds: float
    pessimistic: bool = DEFAULT_PESSIMISTIC

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", positive("Timeout", "seconds", self.seconds))
        if not isinstance(self.pessimistic, bool):
            fail("Timeout", "pessimistic", self.pessimistic, "True or False")


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

        # A blocking wait the call bounded by the deadline (a socket's timeout) runs in
        # real seconds; under another clock (a FakeClock) its timeout is the deadline's
        # when the real time it took reached the budget, though that clock stood still.
        other_clock = not isinstance(clock, SystemClock)

        def handle(ctx: CallContext) -> Any:
            saved_deadline, saved_clock = ctx.deadline, ctx.clock
            budget = seconds if saved_deadline is None else left(seconds, saved_deadline,
                                                                  saved_clock)
            deadline = ctx.deadline = clock.monotonic() + budget
            ctx.clock = clock
            due = time.monotonic() + budget - _EARLY if other_clock else None  # real time
            try:
                if budget <= 0.0:
                    raise timed_out(ctx, budget)
                try:
                    result = call_next(ctx)
                except Exception as error:
                    if is_timeout(error) and (clock.monotonic() > deadline or (
                            due is not None and time.monotonic() >= due)):
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
            run = abandoning(call_next, clock, timed_out)
        elif isinstance(clock, SystemClock):
            return on_loop_timer(call_next, seconds, timed_out)
        else:
            run = watched(call_next, clock, timed_out)

        async def handle(ctx: CallContext) -> Any:
            saved_deadline, saved_clock = ctx.deadline, ctx.clock
            budget = enter(ctx, seconds, clock)
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
