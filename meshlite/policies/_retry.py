"""Retry: run the call again when an attempt fails with a transient error.

The attempt loop is shared by the sync and async handlers through a ``Runner``
(``_retry_runner``), built once per compiled chain and only touched when an attempt
fails, so the success path is one ``try``, one budget deposit and one predicate check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING, Any, cast

from opentelemetry.trace import INVALID_SPAN

from .._backoff import Backoff, as_backoff, exponential, from_tenacity
from .._clock import SYSTEM_CLOCK, Clock, SystemClock
from .._context import CallContext
from .._errors import RejectedError
from .._policy import AsyncHandler, Handler, Policy
from .._predicates import ErrorFilter, error_predicate, is_tenacity_retry, tenacity_test
from .._switches import skips_sleep
from .._validate import fail, non_negative, not_coroutine, random_or_shared
from ._retry_budget import (
    DEFAULT_BUDGET_MIN_PER_SECOND,
    DEFAULT_BUDGET_RATIO,
    DEFAULT_BUDGET_TTL,
    RetryBudget,
)
from ._retry_runner import KIND, Runner, Tries

if TYPE_CHECKING:
    # (only read by type checkers: as_backoff imports tenacity for its objects alone)
    from tenacity.retry import retry_base
    from tenacity.wait import wait_base

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF",
    "DEFAULT_BUDGET_MIN_PER_SECOND",
    "DEFAULT_BUDGET_RATIO",
    "DEFAULT_BUDGET_TTL",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_RETRY_ON",
    "Retry",
    "RetryBudget",
    "RetryOptions",
    "is_transient",
]

DEFAULT_ATTEMPTS = 3
"""Total attempts, the first included."""

DEFAULT_BACKOFF: Backoff = exponential(initial=0.05, maximum=2.0)
"""Full-jitter exponential backoff from 50 ms up to 2 s."""

DEFAULT_MAX_RETRY_AFTER = 30.0
"""The longest wait a server's ``Retry-After`` may ask for, in seconds; a longer one
ends the call at once with that answer."""

_TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a transient failure worth retrying (the default ``on``).

    ``ConnectionError`` and ``TimeoutError`` (so :class:`meshlite.TimeoutExceeded`),
    ``httpx.TransportError`` when httpx is already imported, and aiohttp's
    ``ClientConnectionError`` (``ServerDisconnectedError``, connection timeouts...)
    and ``ClientPayloadError`` when aiohttp is (each is looked up in
    :data:`sys.modules`, never imported).
    """
    if isinstance(error, _TRANSIENT):
        return True
    for module, names in _LAZY_TRANSIENT:
        found = sys.modules.get(module)
        if found is not None:
            for name in names:
                kind = getattr(found, name, None)
                if isinstance(kind, type) and isinstance(error, kind):
                    return True
    return False


_LAZY_TRANSIENT = (
    ("httpx", ("TransportError",)),
    # the connection failed, reset, closed early or timed out; ClientResponseError
    # (a malformed answer, raise_for_status) is not a transport failure
    ("aiohttp", ("ClientConnectionError", "ClientPayloadError")),
)


DEFAULT_RETRY_ON: ErrorFilter = is_transient
"""Transient errors only; see :func:`is_transient`."""

_DEFAULT_BUDGET: Any = object()


def retry_predicate(on: ErrorFilter) -> Callable[[BaseException], bool]:
    """``on`` as a predicate, except that a :class:`meshlite.RejectedError` is retried
    only when ``on`` is a type, or tuple of types, naming its class (or a base class
    that is itself a rejection, such as ``ml.RejectedError``)."""
    matches = error_predicate("Retry", "on", on)
    named = on if isinstance(on, tuple) else (on,) if isinstance(on, type) else ()
    rejections = tuple(t for t in named if issubclass(t, RejectedError))

    def retryable(error: BaseException) -> bool:
        if isinstance(error, RejectedError):
            return isinstance(error, rejections)
        return matches(error)

    return retryable


_STOP_HINT = (
    "an integer >= 1 (tenacity's stop_after_attempt(n) is attempts=n; for "
    "stop_after_delay(s), put an ml.Timeout(s) outside the Retry)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOptions:
    """Validated options of :class:`Retry` (``backoff`` already adapted)."""

    attempts: int = DEFAULT_ATTEMPTS
    backoff: Backoff = DEFAULT_BACKOFF
    on: ErrorFilter = DEFAULT_RETRY_ON
    on_result: Callable[[Any], bool] | None = None
    budget: RetryBudget | None = None
    respect_retry_after: bool = True
    max_retry_after: float | None = DEFAULT_MAX_RETRY_AFTER

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            fail("Retry", "attempts", self.attempts,
                 _STOP_HINT if from_tenacity(self.attempts) else "an integer >= 1")
        if self.attempts < 1:
            fail("Retry", "attempts", self.attempts, ">= 1")
        as_backoff(self.backoff)
        error_predicate("Retry", "on", self.on)
        if self.on_result is not None and (
            not callable(self.on_result) or isinstance(self.on_result, type)
        ):
            fail("Retry", "on_result", self.on_result, "None or a callable (result) -> bool")
        not_coroutine("Retry", "on_result", self.on_result)
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            fail("Retry", "budget", self.budget, "an ml.RetryBudget or None")
        if not isinstance(self.respect_retry_after, bool):
            fail("Retry", "respect_retry_after", self.respect_retry_after, "True or False")
        if self.max_retry_after is not None:
            non_negative("Retry", "max_retry_after", self.max_retry_after)


class Retry(Policy):
    """Run the call again when an attempt fails with an error matching ``on`` (or
    a result ``on_result`` rejects), waiting ``backoff`` between attempts.

    Rejections by meshlite itself (:class:`meshlite.RejectedError`: open circuit,
    full bulkhead, rate limited) are never retried unless ``on`` names their class.
    When the attempts run out the last error is re-raised with a note listing every
    attempt; a rejected result is returned as is.

    Args:
        attempts: Total attempts, the first included (>= 1).
        backoff: The delay strategy (``ml.backoff.*``) or a tenacity ``wait_*`` object.
        on: Errors to retry: a type, a tuple of types, ``fn(error) -> bool`` or a
            tenacity ``retry_*`` strategy (default: :func:`is_transient`).
        on_result: ``fn(result) -> bool`` or a tenacity ``retry_*`` strategy
            (``retry_if_result(...)``); ``True`` retries the result.
        budget: Caps retries as a share of recent calls; by default one
            ``RetryBudget()`` per ``Retry``, shared by every call through it;
            ``None`` disables it.
        respect_retry_after: Wait at least what the error's ``retry_after`` or a
            ``Retry-After`` header asks.
        max_retry_after: The longest such wait, in seconds (``None``: no cap); when
            the server asks for longer, or for longer than the deadline leaves, the
            call ends at once with that answer (``RetriesExhausted.reason`` says why).
        clock: Sleeps between attempts (default: the system clock).
        random: The generator jitter is drawn from.

    Raises:
        ConfigError: an argument is out of range or of the wrong type.
    """

    kind = KIND

    def __init__(
        self,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: Backoff | wait_base = DEFAULT_BACKOFF,
        *,
        on: ErrorFilter | retry_base = DEFAULT_RETRY_ON,
        on_result: Callable[[Any], bool] | retry_base | None = None,
        budget: RetryBudget | None = _DEFAULT_BUDGET,
        respect_retry_after: bool = True,
        max_retry_after: float | None = DEFAULT_MAX_RETRY_AFTER,
        clock: Clock | None = None,
        random: Random | None = None,
    ) -> None:
        super().__init__()
        if clock is not None and not isinstance(clock, Clock):
            fail("Retry", "clock", clock, "a clock with monotonic(), sleep() and asleep()")
        if random is not None and not isinstance(random, Random):
            fail("Retry", "random", random, "a random.Random or None")
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self.random = random_or_shared(random)
        if budget is _DEFAULT_BUDGET:
            budget = RetryBudget(clock=self.clock)
        # tenacity's retry_* strategies read a RetryCallState: test them on one
        errors = (tenacity_test(on, result=False) if is_tenacity_retry(on)
                  else cast("ErrorFilter", on))
        results = (tenacity_test(on_result, result=True) if is_tenacity_retry(on_result)
                   else cast("Callable[[Any], bool] | None", on_result))
        self.options = RetryOptions(
            attempts=attempts, backoff=as_backoff(backoff), on=errors, on_result=results,
            budget=budget, respect_retry_after=respect_retry_after,
            max_retry_after=max_retry_after,
        )

    @property
    def budget(self) -> RetryBudget | None:
        """The retry budget shared by every call through this policy, or ``None``."""
        return self.options.budget

    def wrap(self, call_next: Handler) -> Handler:
        runner = Runner(self.options, retry_predicate(self.options.on), self.random,
                        self.hooks, self._emit)
        failed, may_start, unused = runner.failed, runner.may_start, runner.unused
        on_result = self.options.on_result
        deposit = None if runner.budget is None else runner.budget.deposit
        sleep = self.clock.sleep
        real = isinstance(self.clock, SystemClock)  # (testing mode may skip real sleeps only)

        def handle(ctx: CallContext) -> Any:
            if deposit is not None:
                deposit()
            n = 1
            tries: Tries | None = None
            while True:
                ctx.attempt = n
                try:
                    result = call_next(ctx)
                except Exception as error:
                    delay = failed(ctx, n, tries := tries or Tries(), error, None)
                    if delay is None:
                        # tries holds the previous attempt's error, whose traceback holds
                        # this frame: let go of it, or the two make a reference cycle
                        # that only the garbage collector frees (each failed call).
                        tries = None
                        raise
                else:
                    if on_result is None or not on_result(result):
                        span = ctx.span
                        if span is not None and span is not INVALID_SPAN:
                            span.set_attribute("meshlite.attempts", n)
                        return result
                    delay = failed(ctx, n, tries := tries or Tries(), None, result)
                    if delay is None:
                        ctx.refused_result = True  # (a Cache outside keeps it not)
                        return result
                if delay > 0.0 and not skips_sleep(real):
                    try:
                        sleep(delay)
                    except BaseException:  # interrupted: the retry will not be made
                        unused(tries)
                        raise
                n += 1
                if not may_start(ctx, n, tries):
                    return _final(ctx, tries)

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        runner = Runner(self.options, retry_predicate(self.options.on), self.random,
                        self.hooks, self._emit)
        failed, may_start, unused = runner.failed, runner.may_start, runner.unused
        on_result = self.options.on_result
        deposit = None if runner.budget is None else runner.budget.deposit
        asleep = self.clock.asleep
        real = isinstance(self.clock, SystemClock)

        async def handle(ctx: CallContext) -> Any:
            if deposit is not None:
                deposit()
            n = 1
            tries: Tries | None = None
            while True:
                ctx.attempt = n
                try:
                    result = await call_next(ctx)
                except Exception as error:
                    delay = failed(ctx, n, tries := tries or Tries(), error, None)
                    if delay is None:
                        # tries holds the previous attempt's error, whose traceback holds
                        # this frame: let go of it, or the two make a reference cycle
                        # that only the garbage collector frees (each failed call).
                        tries = None
                        raise
                else:
                    if on_result is None or not on_result(result):
                        span = ctx.span
                        if span is not None and span is not INVALID_SPAN:
                            span.set_attribute("meshlite.attempts", n)
                        return result
                    delay = failed(ctx, n, tries := tries or Tries(), None, result)
                    if delay is None:
                        ctx.refused_result = True  # (a Cache outside keeps it not)
                        return result
                if delay > 0.0 and not skips_sleep(real):
                    try:
                        await asleep(delay)
                    except BaseException:  # cancelled: the retry will not be made
                        unused(tries)
                        raise
                n += 1
                if not may_start(ctx, n, tries):
                    return _final(ctx, tries)

        return handle

    def __repr__(self) -> str:
        o = self.options
        return f"Retry(attempts={o.attempts}, backoff={o.backoff!r})"


def _final(ctx: CallContext, tries: Tries) -> Any:
    """What a call ends with when its next attempt may not start: the last error
    raised, or the last result ``on_result`` refused, marked as such on ``ctx``."""
    ctx.refused_result = tries.error is None
    return tries.final()
