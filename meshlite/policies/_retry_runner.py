"""The failure path of a compiled Retry: what to do when an attempt failed (retry
after how long, or give up and why), with the events, notes and span attributes
that record it. Built once per compiled chain; the success path never touches it."""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import TYPE_CHECKING, Any

from .._backoff import TenacityBackoff
from .._context import CallContext
from .._events import Event, EventHooks, RetriesExhausted, RetryBudgetExhausted, RetryScheduled
from .._printable import described
from .._retry_after import retry_after_of
from .._semconv import error_type
from ._notes import add_note

if TYPE_CHECKING:
    from ._retry import RetryOptions

__all__ = ["KIND", "Runner", "Tries"]

KIND = "retry"
"""``Retry.kind``: the ``policy`` of every event recorded here."""


class Tries:
    """What the failed attempts of one call left behind; made on the first failure."""

    __slots__ = ("error", "log", "previous", "result", "token")

    def __init__(self) -> None:
        self.log: list[str] = []
        self.previous = 0.0
        self.error: Exception | None = None
        self.result: Any = None
        self.token: int | None = None  # the budget slice of the pending retry's token

    def final(self) -> Any:
        """Return the last rejected result, or raise the last error."""
        error, self.error = self.error, None
        if error is None:
            return self.result
        try:
            raise error
        finally:
            del error  # a frame holding the error it raises would make a reference cycle


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class Runner:
    """The failure path of one compiled Retry: options read once, into slots."""

    __slots__ = ("attempts", "budget", "cap", "delay", "emit", "hooks", "respect", "retryable",
                 "rng")

    def __init__(self, o: RetryOptions, retryable: Callable[[BaseException], bool],
                 rng: Random, hooks: EventHooks, emit: Callable[[Event], None]) -> None:
        self.attempts = o.attempts
        self.retryable = retryable
        self.respect = o.respect_retry_after
        self.cap = o.max_retry_after
        self.budget = o.budget
        self.rng = rng
        self.hooks = hooks
        self.emit = emit
        backoff = o.backoff
        if isinstance(backoff, TenacityBackoff):
            # tenacity strategies may read the outcome (wait_exception does).
            self.delay: Callable[[int, float, Exception | None, Any], float] = (
                lambda n, _prev, error, result: backoff.delay_for(n, error, result)
            )
        else:
            rng = self.rng
            self.delay = lambda n, prev, _error, _result: backoff(n, prev, rng)

    def failed(self, ctx: CallContext, n: int, tries: Tries, error: Exception | None,
               result: Any) -> float | None:
        """Attempt ``n`` failed: return the delay before attempt ``n + 1``, or ``None``
        to give up (the caller then re-raises ``error`` or returns ``result``)."""
        if error is not None:
            tries.log.append(f"#{n} {described(error)}")
            if not self.retryable(error):
                if n > 1:
                    self.give_up(ctx, n, tries, error, "not_retryable",
                                 f"{type(error).__qualname__} is not retried")
                elif ctx.span is not None:
                    ctx.span.set_attribute("meshlite.attempts", n)
                return None
        else:
            tries.log.append(f"#{n} result {_short(result)}")
        if n >= self.attempts:
            self.give_up(ctx, n, tries, error, "attempts", "")
            return None
        delay = tries.previous = self.delay(n, tries.previous, error, result)
        hint = retry_after_of(error if error is not None else result) if self.respect else None
        if hint is not None:
            if self.cap is not None and hint > self.cap:
                self.give_up(ctx, n, tries, error, "retry_after",
                             f"the server asked to wait {hint:.3f}s (Retry-After), more "
                             f"than max_retry_after={self.cap}s", hint)
                return None
            delay = max(delay, hint)
        if ctx.deadline is not None:
            left = ctx.deadline - ctx.clock.monotonic()
            if delay >= left:
                asked = "Retry-After" if hint is not None and hint >= delay else "backoff"
                self.give_up(ctx, n, tries, error, "deadline",
                             f"the deadline left no time for attempt {n + 1} "
                             f"({asked} {delay:.3f}s, {max(0.0, left):.3f}s left)", hint)
                return None
        if self.budget is not None:
            token = self.budget._take()
            if token is None:
                if self.hooks.active:
                    self.emit(RetryBudgetExhausted(policy=KIND, service=ctx.service,
                                                   operation=ctx.operation, attempt=n))
                self.give_up(ctx, n, tries, error, "budget",
                             f"the retry budget refused attempt {n + 1}")
                return None
            tries.token = token
        self.scheduled(ctx, n, delay, error)
        tries.error, tries.result = error, result
        return delay

    def unused(self, tries: Tries) -> None:
        """The retry scheduled last will not be made (the caller was cancelled during
        the backoff, or its deadline passed): give its budget token back."""
        token, tries.token = tries.token, None
        if token is not None and self.budget is not None:
            self.budget._give_back(token)

    def scheduled(self, ctx: CallContext, n: int, delay: float, error: Exception | None) -> None:
        if self.hooks.active:
            self.emit(RetryScheduled(policy=KIND, service=ctx.service,
                                     operation=ctx.operation, attempt=n, delay=delay,
                                     error=error))
        if ctx.span is not None:
            ctx.span.add_event("meshlite.retry", attributes={
                "meshlite.attempt": n,
                "meshlite.retry.delay_s": delay,
                "error.type": "result" if error is None else error_type(error),
            })

    def give_up(self, ctx: CallContext, n: int, tries: Tries, error: Exception | None,
                reason: str, why: str, retry_after: float | None = None) -> None:
        """Record that no attempt ``n + 1`` will be made: note, event, span attribute."""
        if error is not None:
            plural = "attempt" if n == 1 else "attempts"
            note = f"meshlite: {n} {plural} failed: {', '.join(tries.log)}"
            add_note(error, f"{note}; {why}" if why else note)
        if self.hooks.active:
            self.emit(RetriesExhausted(policy=KIND, service=ctx.service,
                                       operation=ctx.operation, attempts=n, reason=reason,
                                       error=error, retry_after=retry_after))
        if ctx.span is not None:
            ctx.span.set_attribute("meshlite.attempts", n)

    def may_start(self, ctx: CallContext, n: int, tries: Tries) -> bool:
        """After the backoff: whether attempt ``n`` may start before the deadline."""
        if ctx.deadline is None or ctx.clock.monotonic() < ctx.deadline:
            tries.token = None  # spent: the retry is made
            return True
        self.unused(tries)
        self.give_up(ctx, n - 1, tries, tries.error, "deadline",
                     f"the deadline passed during the backoff before attempt {n}")
        return False
