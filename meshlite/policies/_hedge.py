"""Hedge: when an attempt is slow, start another one and take the first success.

The policy, its options and its event; one hedged call (the race between the
attempts) is :class:`~meshlite.policies._hedge_race.Race`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .._clock import Clock
from .._context import CallContext
from .._errors import ConfigError
from .._events import Event, RetryBudgetExhausted
from .._policy import AsyncHandler, Decorated, Handler, Policy
from .._predicates import ErrorFilter, error_predicate
from .._validate import at_least, clock_option, fail, non_negative
from ._hedge_race import Race
from ._retry_budget import RetryBudget

__all__ = ["DEFAULT_HEDGE_ON", "DEFAULT_MAX_HEDGES", "Hedge", "HedgeOptions", "HedgeStarted"]

DEFAULT_MAX_HEDGES = 1
"""One extra attempt: the usual choice for tail latency, at most twice the load."""

DEFAULT_HEDGE_ON: tuple[type[BaseException], ...] = (Exception,)
"""A failed attempt lets the next hedge start at once, whatever the error."""

_DEFAULT_BUDGET: Any = object()

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeOptions:
    """Validated options of :class:`Hedge`."""

    delay: float
    max_hedges: int = DEFAULT_MAX_HEDGES
    on: ErrorFilter = DEFAULT_HEDGE_ON
    budget: RetryBudget | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "delay", non_negative("Hedge", "delay", self.delay))
        at_least("Hedge", "max_hedges", self.max_hedges, 1)
        error_predicate("Hedge", "on", self.on)
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            fail("Hedge", "budget", self.budget, "an ml.RetryBudget or None")


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeStarted(Event):
    """A hedge attempt started; ``attempt`` counts the primary as 1.

    ``reason`` is ``"delay"`` when the earlier attempts were slow, or ``"error"``
    when one failed and the next hedge started without waiting.
    """

    attempt: int
    reason: str


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
        budget: Caps hedges as a share of recent calls, as it caps ``Retry``'s
            retries: each call deposits, each hedge takes a token, and a hedge the
            budget refuses is not started (nor any later one of that call). By
            default one ``RetryBudget()`` per ``Hedge``; ``None`` disables it.
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
        budget: RetryBudget | None = _DEFAULT_BUDGET,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.clock: Clock = clock_option("Hedge", clock)
        if budget is _DEFAULT_BUDGET:
            budget = RetryBudget(clock=self.clock)
        self.options = HedgeOptions(delay=delay, max_hedges=max_hedges, on=on, budget=budget)
        self._matches = error_predicate("Hedge", "on", on)

    @property
    def budget(self) -> RetryBudget | None:
        """The budget shared by every call through this policy, or ``None``."""
        return self.options.budget

    if TYPE_CHECKING:
        # Decorating a sync function raises ConfigError (wrap): type checkers reject
        # it too, where Policy's decorator takes both kinds.
        def __call__(  # type: ignore[override]
            self, fn: Callable[P, Coroutine[Any, Any, T]]
        ) -> Decorated[P, Coroutine[Any, Any, T]]: ...

    def wrap(self, call_next: Handler) -> Handler:
        raise ConfigError(
            "Hedge: hedging needs an async function, because it races attempts as "
            "asyncio tasks; decorate an `async def` (or use pipeline.acall), or "
            "remove Hedge from pipelines used for sync calls",
            policy=self.kind,
        )

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        current_task = asyncio.current_task
        budget = self.options.budget
        deposit = None if budget is None else budget.deposit

        async def handle(ctx: CallContext) -> Any:
            task = current_task()
            if task is None:
                raise RuntimeError("Hedge: the call must run inside an asyncio task")
            if deposit is not None:
                deposit()
            race = Race(self, ctx, call_next, task)
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

    def _refused(self, ctx: CallContext, attempt: int) -> None:
        """Tell the hooks that the budget refused attempt number ``attempt``."""
        self._emit(RetryBudgetExhausted(policy=self.kind, service=ctx.service,
                                        operation=ctx.operation, attempt=attempt))

    def _started(self, ctx: CallContext, attempt: int, reason: str) -> None:
        """Tell the hooks that attempt number ``attempt`` started (a hedge), and why."""
        self._emit(HedgeStarted(policy=self.kind, service=ctx.service,
                                operation=ctx.operation, attempt=attempt, reason=reason))

    def __repr__(self) -> str:
        o = self.options
        return f"Hedge(delay={o.delay!r}, max_hedges={o.max_hedges!r})"
