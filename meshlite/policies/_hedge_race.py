"""One hedged call of :class:`~meshlite.policies._hedge.Hedge`: the race between the
primary attempt and its hedges, decided by the first success or a final error.

The policy compiles a handler that makes a :class:`Race` per call; the race owns the
timer, the hedge tasks and their outcomes, and settles the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._clock import Clock, SystemClock
from .._context import CallContext, run_as
from .._errors import ConfigError
from .._policy import AsyncHandler
from .._printable import described
from ._notes import add_note

if TYPE_CHECKING:
    from ._hedge import Hedge

__all__ = ["Race", "refuse_hedges"]

_Attempt = asyncio.Task[Any]

_REFUSED: list[tuple[Callable[..., Any], Callable[[CallContext], ConfigError]]] = []
"""Call functions whose attempts cannot run side by side, with the error that says so."""


def refuse_hedges(fn: Callable[..., Any], error: Callable[[CallContext], ConfigError]
                  ) -> None:
    """Have a Hedge start no hedge of a call whose function is ``fn`` (one whose
    attempts share state, so they cannot race): the first hedge due is refused
    before anything runs for it (no backend is picked), ``error(ctx)`` is recorded
    as its failure, and no other hedge of the call starts. The primary attempt goes
    on; the refusal is raised if it fails and no error of its own came after."""
    _REFUSED.append((fn, error))


_Entry = tuple[float | None, Clock, Any, int]
"""What the policies inside the Hedge set on the context for an attempt while it
runs (a ``Timeout``'s deadline and clock, a ``Trace``'s span, a ``Retry``'s attempt
number), as the call had them when it reached the Hedge."""


def _fork(ctx: CallContext, index: int, entry: _Entry) -> CallContext:
    """A copy of ``ctx`` for hedge ``index`` (its ``hedge`` field), so attempts never
    overwrite each other's ``attempt``, ``backend`` or deadline. It starts from
    ``entry``, not from what the primary's inner policies made of the context
    meanwhile: a per-attempt ``Timeout`` inside the Hedge gives the hedge its whole
    budget, not what the primary's left. ``backend`` stays the primary's (routing
    then treats the hedge as a later attempt); ``tried`` is one list shared by every
    attempt, so routing sees the other attempts' picks; ``extras`` is copied one
    level deep."""
    if ctx.tried is None:  # from now on each pick is recorded in it (routing)
        ctx.tried = [] if ctx.backend is None else [ctx.backend]
    fork = ctx.copy()
    fork.deadline, fork.clock, fork.span, fork.attempt = entry
    fork.hedge = index
    if ctx.extras is not None:
        fork.extras = dict(ctx.extras)
    return fork


class Race:
    """One hedged call. The primary attempt runs inline, in the caller's task, so a
    call answered within ``delay`` costs one timer and no task. Hedges are tasks,
    started by the timer (or at once when an attempt fails); their outcomes arrive
    as done-callbacks. A decision (a winning hedge, or a final error) reached while
    the primary runs cancels the caller's task, and the handler turns that
    cancellation back into the decision, as ``asyncio.timeout`` does."""

    __slots__ = ("call_next", "closed", "ctx", "decided", "entry", "failures", "hedges",
                 "loop", "policy", "primary_running", "stale", "started", "task", "timer",
                 "waiter", "why", "winner")

    def __init__(self, policy: Hedge, ctx: CallContext, call_next: AsyncHandler,
                 task: asyncio.Task[Any]) -> None:
        self.policy, self.ctx, self.call_next, self.task = policy, ctx, call_next, task
        self.entry: _Entry = (ctx.deadline, ctx.clock, ctx.span, ctx.attempt)
        self.loop = task.get_loop()
        self.hedges: dict[_Attempt, CallContext] = {}
        self.failures: list[tuple[int, BaseException]] = []
        self.started, self.primary_running, self.decided = 1, True, False
        self.closed = False  # the call is over: outcomes arriving now change nothing
        self.winner: tuple[_Attempt, CallContext] | None = None
        self.timer: asyncio.TimerHandle | _Attempt | None = None
        self.stale: list[_Attempt] = []  # cancelled sleeper tasks, awaited by close()
        self.waiter: asyncio.Future[None] | None = None
        self.why = ""  # why a hedge was due but none started (ends the note), if so

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
        deadline, clock = self.entry[0], self.entry[1]
        if deadline is not None and clock.monotonic() >= deadline:
            # The call's time is up: a hedge could only fail (routing sends nothing
            # then), yet it would count as one and take a budget token.
            self.started = self.policy.options.max_hedges + 1
            self.why = f"; the call's deadline had passed when hedge {index} was due"
            return
        refused = _refusal(self.ctx)
        if refused is not None:  # no hedge of this call may start: none will
            self.started = self.policy.options.max_hedges + 1
            self.failures.append((index, refused))
            return
        budget = self.policy.options.budget
        if budget is not None and not budget.try_withdraw():
            # An outage must not multiply the load: no hedge of this call starts now
            # or later; the attempts already running go on.
            self.started = self.policy.options.max_hedges + 1
            self.why = f"; the retry budget refused hedge {index}"
            if self.policy.hooks.active:
                self.policy._refused(self.ctx, index + 1)
            return
        fork = _fork(self.ctx, index, self.entry)
        hedge = self.loop.create_task(run_as(self.call_next, fork))
        self.hedges[hedge] = fork
        hedge.add_done_callback(self._hedge_done)
        if self.policy.hooks.active:
            self.policy._started(self.ctx, index + 1, reason)
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
        hedge at once; anything else is final, and so is an error of ``on`` itself
        (raised in the call's place)."""
        self.failures.append((index, error))
        try:
            again = isinstance(error, Exception) and self.policy._matches(error)
        except Exception as raised:  # the predicate's own bug: final, and raised
            self.failures.append((index, raised))
            again = False
        if not again:
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
        # final: an error not matching ``on``; else every attempt failed
        error = self.failures[-1][1] if self.decided else _exhausted(self.failures, self.why)
        # The race is over: it lets go of the errors, and this frame of the one it
        # raises, whose traceback holds the frames that hold the race (a reference
        # cycle only the garbage collector would free, each failed call).
        self.failures.clear()
        try:
            raise error
        finally:
            del error

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


def _refusal(ctx: CallContext) -> ConfigError | None:
    fn = ctx.fn
    for refused, error in _REFUSED:
        if fn is refused:
            return error(ctx)
    return None


def _exhausted(failures: list[tuple[int, BaseException]], why: str) -> BaseException:
    listing = "; ".join(
        f"{'primary' if index == 0 else f'hedge {index}'}: {described(error)}"
        for index, error in failures
    )
    last = failures[-1][1]
    failed = f"all {len(failures)} attempts" if len(failures) > 1 else "its one attempt"
    add_note(last, f"Hedge: {failed} failed ({listing}){why}")
    return last
