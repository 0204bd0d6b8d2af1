"""Hedge: when an attempt is slow, start another one and take the first success."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .._clock import Clock, SystemClock
from .._context import CallContext, run_as
from .._errors import ConfigError
from .._events import Event
from .._policy import AsyncHandler, Handler, Policy
from .._predicates import ErrorFilter, error_predicate
from .._validate import at_least, clock_option, non_negative
from ._notes import add_note

__all__ = ["DEFAULT_HEDGE_ON", "DEFAULT_MAX_HEDGES", "Hedge", "HedgeOptions", "HedgeStarted"]

DEFAULT_MAX_HEDGES = 1
"""One extra attempt: the usual choice for tail latency, at most twice the load."""

DEFAULT_HEDGE_ON: tuple[type[BaseException], ...] = (Exception,)
"""A failed attempt lets the next hedge start at once, whatever the error."""

_Attempt = asyncio.Task[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeOptions:
    """Validated options of :class:`Hedge`."""

    delay: float
    max_hedges: int = DEFAULT_MAX_HEDGES
    on: ErrorFilter = DEFAULT_HEDGE_ON

    def __post_init__(self) -> None:
        object.__setattr__(self, "delay", non_negative("Hedge", "delay", self.delay))
        at_least("Hedge", "max_hedges", self.max_hedges, 1)
        error_predicate("Hedge", "on", self.on)


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeStarted(Event):
    """A hedge attempt started; ``attempt`` counts the primary as 1.

    ``reason`` is ``"delay"`` when the earlier attempts were slow, or ``"error"``
    when one failed and the next hedge started without waiting.
    """

    attempt: int
    reason: str


def _fork(ctx: CallContext, index: int) -> CallContext:
    """A copy of ``ctx`` for hedge ``index`` (its ``hedge`` field), so attempts never
    overwrite each other's ``attempt``, ``backend`` or deadline. ``tried`` is one list
    shared by every attempt, so routing sees the other attempts' picks; ``extras`` is
    copied one level deep."""
    if ctx.tried is None:
        ctx.tried = []
    fork = ctx.copy()
    fork.hedge = index
    if ctx.extras is not None:
        fork.extras = dict(ctx.extras)
    return fork


class _Race:
    """One hedged call. The primary attempt runs inline, in the caller's task, so a
    call answered within ``delay`` costs one timer and no task. Hedges are tasks,
    started by the timer (or at once when an attempt fails); their outcomes arrive
    as done-callbacks. A decision (a winning hedge, or a final error) reached while
    the primary runs cancels the caller's task, and the handler turns that
    cancellation back into the decision, as ``asyncio.timeout`` does."""

    __slots__ = ("call_next", "closed", "ctx", "decided", "failures", "hedges", "loop",
                 "policy", "primary_running", "stale", "started", "task", "timer", "waiter",
                 "winner")

    def __init__(self, policy: Hedge, ctx: CallContext, call_next: AsyncHandler,
                 task: asyncio.Task[Any]) -> None:
        self.policy, self.ctx, self.call_next, self.task = policy, ctx, call_next, task
        self.loop = task.get_loop()
        self.hedges: dict[_Attempt, CallContext] = {}
        self.failures: list[tuple[int, BaseException]] = []
        self.started, self.primary_running, self.decided = 1, True, False
        self.closed = False  # the call is over: outcomes arriving now change nothing
        self.winner: tuple[_Attempt, CallContext] | None = None
        self.timer: asyncio.TimerHandle | _Attempt | None = None
        self.stale: list[_Attempt] = []  # cancelled sleeper tasks, awaited by close()
        self.waiter: asyncio.Future[None] | None = None

    def arm(self) -> None:
        """Start the next hedge after ``delay``, unless every hedge has started."""
        if self.started > self.policy.options.max_hedges:
            return
        delay, clock = self.policy.options.delay, self.policy.clock
        if type(clock) is SystemClock:
            self.timer = self.loop.call_later(delay, self.start, "delay")
        else:
            sleeper = self.loop.create_task(clock.asleep(delay))
            sleeper.add_done_callback(self._slept)
            self.timer = sleeper

    def _slept(self, sleeper: _Attempt) -> None:
        if self.timer is sleeper and not sleeper.cancelled():
            self.start("delay")

    def start(self, reason: str) -> None:
        """Start the next hedge now: the delay ran out, or an attempt failed."""
        self.timer = None
        if self.decided or self.closed or self.ctx.no_resend:
            return  # (no_resend: a request that must not be sent again)
        index, self.started = self.started, self.started + 1
        fork = _fork(self.ctx, index)
        hedge = self.loop.create_task(run_as(self.call_next, fork))
        self.hedges[hedge] = fork
        hedge.add_done_callback(self._hedge_done)
        policy = self.policy
        if policy.hooks.active:
            policy._emit(HedgeStarted(policy=policy.kind, service=self.ctx.service,
                                      operation=self.ctx.operation, attempt=index + 1,
                                      reason=reason))
        self.arm()

    def _hedge_done(self, hedge: _Attempt) -> None:
        fork = self.hedges.pop(hedge)
        # Decided, or closing: a loser's outcome, even one that ignored or turned its
        # cancellation into an error, starts nothing and wins nothing.
        if self.decided or self.closed:
            if not hedge.cancelled():
                hedge.exception()  # retrieved: a loser's error is not worth a log line
            return
        if hedge.cancelled():
            # Not by us (we cancel hedges only when closing): the attempt itself ended
            # cancelled. Final, as for the primary; settle() may be waiting for it.
            self.failed(fork.hedge, asyncio.CancelledError(
                f"hedge {fork.hedge} ended cancelled, not by the caller"))
            return
        error = hedge.exception()
        if error is None:
            self.winner = (hedge, fork)
            self._decide()
        else:
            self.failed(fork.hedge, error)
            self._wake()

    def failed(self, index: int, error: BaseException) -> None:
        """Record a failed attempt: an ``Exception`` matching ``on`` starts the next
        hedge at once; anything else is final."""
        self.failures.append((index, error))
        if not (isinstance(error, Exception) and self.policy._matches(error)):
            self._decide()
        elif self.started <= self.policy.options.max_hedges:
            self.disarm()
            self.start("error")

    def _decide(self) -> None:
        self.decided = True
        self.disarm()
        if self.primary_running:
            self.task.cancel()  # the primary lost; its handler sees the CancelledError
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def disarm(self) -> None:
        """Cancel the pending delay, if any."""
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
            if isinstance(timer, asyncio.Task):
                self.stale.append(timer)

    async def settle(self) -> Any:
        """After the primary: wait for a decision, then return or raise it."""
        self.primary_running = False
        try:
            while not self.decided and (self.hedges or self.timer is not None):
                self.waiter = self.loop.create_future()
                await self.waiter
        finally:
            await self.close()
        if self.winner is not None:
            hedge, fork = self.winner
            # Whoever reads the context after the call (tracing, routing stats)
            # should see the backend that actually answered.
            self.ctx.backend = fork.backend
            return hedge.result()
        if self.decided:
            raise self.failures[-1][1]  # final: an error not matching ``on``
        raise _exhausted(self.failures)

    async def close(self) -> None:
        """Cancel the timer and every running hedge; wait until they are all gone."""
        self.closed = True
        self.disarm()
        pending = [*self.hedges]
        for task in pending:
            task.cancel()
        pending += self.stale
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _exhausted(failures: list[tuple[int, BaseException]]) -> BaseException:
    listing = "; ".join(
        f"{'primary' if index == 0 else f'hedge {index}'}: {error!r}"
        for index, error in failures
    )
    last = failures[-1][1]
    add_note(last, f"Hedge: all {len(failures)} attempts failed ({listing})")
    return last


class Hedge(Policy):
    """Start another attempt when the current ones are slow; the first success wins.

    The primary attempt starts at once. Each ``delay`` seconds without an answer
    another attempt (a hedge) starts, up to ``max_hedges`` of them. An attempt that
    fails with an error matching ``on`` starts the next hedge at once instead of
    waiting. The first attempt to succeed wins: the others are cancelled and awaited,
    so nothing is left running. When every attempt fails, the last error is raised
    with a note listing each attempt's error. Async calls only.

    The first decision stands: a loser that ignores its cancellation and answers
    late (or turns it into an error) changes nothing and starts no hedge; the call
    still waits for it to end, except for a thread (``asyncio.to_thread``), which
    runs on and whose result is dropped (docs/policies/hedge.md).

    Each hedge runs as a task on its own copy of the call context, marked
    ``ctx.hedge = n`` (1 for the first hedge; the primary's is 0),
    so attempts never overwrite each other's ``attempt`` or ``backend``.

    Args:
        delay: Seconds to wait for an answer before starting the next hedge (>= 0).
        max_hedges: Extra attempts allowed after the primary (>= 1).
        on: Errors that start the next hedge at once (default: any ``Exception``).
            Any other error is final: the other attempts are cancelled and it is
            raised.
        clock: The clock the delays are measured on (default: the system clock).

    Raises:
        ConfigError: a bad option; or, from ``wrap``, a sync function (hedging
            races attempts as asyncio tasks).
    """

    kind = "hedge"

    def __init__(
        self,
        delay: float,
        max_hedges: int = DEFAULT_MAX_HEDGES,
        *,
        on: ErrorFilter = DEFAULT_HEDGE_ON,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.options = HedgeOptions(delay=delay, max_hedges=max_hedges, on=on)
        self.clock: Clock = clock_option("Hedge", clock)
        self._matches = error_predicate("Hedge", "on", on)

    def wrap(self, call_next: Handler) -> Handler:
        raise ConfigError(
            "Hedge: hedging needs an async function, because it races attempts as "
            "asyncio tasks; decorate an `async def` (or use pipeline.acall), or "
            "remove Hedge from pipelines used for sync calls",
            policy=self.kind,
        )

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        current_task = asyncio.current_task

        async def handle(ctx: CallContext) -> Any:
            task = current_task()
            if task is None:
                raise RuntimeError("Hedge: the call must run inside an asyncio task")
            race = _Race(self, ctx, call_next, task)
            race.arm()
            cancelling = task.cancelling()
            try:
                result = await call_next(ctx)
            except asyncio.CancelledError:
                race.primary_running = False
                if race.decided and task.uncancel() <= cancelling:
                    return await race.settle()  # cancelled by us: a hedge decided
                await race.close()
                raise
            except Exception as error:
                race.primary_running = False
                if race.decided:  # the primary turned our cancellation into an error
                    task.uncancel()
                else:
                    race.failed(0, error)
                return await race.settle()
            except BaseException:
                race.primary_running = False
                await race.close()
                raise
            race.primary_running = False
            if race.decided:  # the primary swallowed our cancellation and answered:
                task.uncancel()  # too late, the decision stands (the first success,
                return await race.settle()  # or a final error)
            race.disarm()
            if race.hedges or race.stale:
                await race.close()
            return result

        return handle

    def __repr__(self) -> str:
        o = self.options
        return f"Hedge(delay={o.delay!r}, max_hedges={o.max_hedges!r})"
