"""Backoff strategies: how long :class:`meshlite.Retry` waits before the next attempt.

A strategy is any callable ``backoff(attempt, previous, rng) -> seconds``: ``attempt``
is the attempt that just failed (1 for the first), ``previous`` the delay this
strategy returned before it (0.0 before the first retry) and ``rng`` the
:class:`random.Random` of the retry policy, so a seeded generator makes the delays
reproducible. The built-in strategies are frozen dataclasses, safe to share.

tenacity ``wait_*`` objects are accepted wherever a strategy is: :func:`as_backoff`
adapts them, importing tenacity only when the object comes from it. The server's own
hint, a ``retry_after`` attribute or a ``Retry-After`` header, is read by
:func:`retry_after_of` (in :mod:`._retry_after`, re-exported here).
"""

from __future__ import annotations

import inspect
import math
import random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._retry_after import parse_retry_after, retry_after_of
from ._validate import fail, non_negative, positive

__all__ = [
    "Backoff",
    "ConstantBackoff",
    "DecorrelatedBackoff",
    "ExponentialBackoff",
    "TenacityBackoff",
    "as_backoff",
    "from_tenacity",
    "tenacity_state",
    "constant",
    "decorrelated",
    "exponential",
    "parse_retry_after",
    "retry_after_of",
]


@runtime_checkable
class Backoff(Protocol):
    """A backoff strategy: the delay before attempt ``attempt + 1``.

    Args:
        attempt: The attempt that just failed, starting at 1.
        previous: The delay this strategy returned for the previous retry of the
            same call, or 0.0 before the first retry.
        rng: The random generator to draw jitter from.

    Returns:
        The delay in seconds (>= 0).
    """

    def __call__(self, attempt: int, previous: float, rng: random.Random, /) -> float: ...


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Exponential backoff, with full jitter by default (see :func:`exponential`)."""

    initial: float
    maximum: float
    multiplier: float
    jitter: bool
    # The first attempt whose un-jittered delay reaches ``maximum``; from there on the
    # power is never computed, so a huge attempt count cannot overflow.
    _capped_from: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        capped_from = 2**62
        if self.multiplier > 1.0 and self.maximum > self.initial:
            # Logs of each (not of the quotient, which overflows for maximum=1e308).
            steps = (math.log(self.maximum) - math.log(self.initial)) / math.log(self.multiplier)
            capped_from = min(capped_from, math.floor(steps) + 2)
        elif self.maximum <= self.initial:
            capped_from = 1
        object.__setattr__(self, "_capped_from", capped_from)

    def __call__(self, attempt: int, previous: float, rng: random.Random, /) -> float:
        if attempt >= self._capped_from:
            ceiling = self.maximum
        else:
            ceiling = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return ceiling * rng.random() if self.jitter else ceiling


@dataclass(frozen=True, slots=True)
class ConstantBackoff:
    """The same delay before every retry (see :func:`constant`)."""

    delay: float

    def __call__(self, attempt: int, previous: float, rng: random.Random, /) -> float:
        return self.delay


@dataclass(frozen=True, slots=True)
class DecorrelatedBackoff:
    """Decorrelated jitter (see :func:`decorrelated`)."""

    initial: float
    maximum: float

    def __call__(self, attempt: int, previous: float, rng: random.Random, /) -> float:
        last = previous if previous > 0.0 else self.initial
        return min(self.maximum, rng.uniform(self.initial, last * 3.0))


def exponential(
    initial: float = 0.05, maximum: float = 2.0, multiplier: float = 2.0, jitter: bool = True
) -> ExponentialBackoff:
    """Exponential backoff with "full jitter".

    Before retry ``n`` (after attempt ``n`` failed) the ceiling is
    ``min(maximum, initial * multiplier ** (n - 1))``; with ``jitter`` the delay is
    drawn uniformly from ``[0, ceiling)`` ("Full Jitter" in the AWS Architecture Blog
    post *Exponential Backoff And Jitter*), which spreads the retries of many
    clients that failed together. Without ``jitter`` the delay is the ceiling.

    Args:
        initial: The ceiling before the first retry, in seconds (> 0).
        maximum: The largest ceiling, in seconds (>= initial).
        multiplier: How much the ceiling grows per attempt (>= 1).
        jitter: Draw the delay at random below the ceiling.

    Raises:
        ConfigError: an argument is out of range.
    """
    owner = "backoff.exponential"
    initial = positive(owner, "initial", initial)
    maximum = positive(owner, "maximum", maximum)
    if maximum < initial:
        fail(owner, "maximum", maximum, f">= initial ({initial!r})")
    multiplier = positive(owner, "multiplier", multiplier)
    if multiplier < 1.0:
        fail(owner, "multiplier", multiplier, ">= 1")
    if not isinstance(jitter, bool):
        fail(owner, "jitter", jitter, "True or False")
    return ExponentialBackoff(initial, maximum, multiplier, jitter)


def constant(delay: float) -> ConstantBackoff:
    """The same ``delay`` seconds (>= 0) before every retry.

    Raises:
        ConfigError: ``delay`` is negative or not a number.
    """
    return ConstantBackoff(non_negative("backoff.constant", "delay", delay))


def decorrelated(initial: float = 0.05, maximum: float = 2.0) -> DecorrelatedBackoff:
    """Decorrelated jitter: each delay is drawn from ``[initial, 3 * previous delay]``.

    The first retry draws from ``[initial, 3 * initial]``; every delay is capped at
    ``maximum``. This is "Decorrelated Jitter" from the AWS Architecture Blog: delays
    grow roughly geometrically but each client wanders on its own path.

    Args:
        initial: The smallest delay, in seconds (> 0).
        maximum: The largest delay, in seconds (>= initial).

    Raises:
        ConfigError: an argument is out of range.
    """
    owner = "backoff.decorrelated"
    initial = positive(owner, "initial", initial)
    maximum = positive(owner, "maximum", maximum)
    if maximum < initial:
        fail(owner, "maximum", maximum, f">= initial ({initial!r})")
    return DecorrelatedBackoff(initial, maximum)


def tenacity_state(retrying: Any, attempt: int, error: BaseException | None,
                   result: Any) -> Any:
    """A ``tenacity.RetryCallState`` for ``attempt``, its outcome set to ``error`` (or
    to ``result`` when ``error`` is None): what tenacity's ``wait_*`` and ``retry_*``
    strategies read. ``retrying`` is a ``tenacity.Retrying``; none of them reads it,
    but a real one keeps every attribute a strategy might touch valid."""
    import tenacity  # only reached for objects that come from tenacity

    state = tenacity.RetryCallState(retry_object=retrying, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if error is not None:
        state.set_exception((type(error), error, error.__traceback__))
    else:
        state.set_result(result)
    return state


class TenacityBackoff:
    """A tenacity ``wait_*`` strategy used as a meshlite backoff.

    tenacity strategies read a ``RetryCallState``; one is built per delay with
    ``attempt_number`` set to the attempt that failed and ``outcome`` set to its error
    or result (so ``wait_exception`` works). tenacity's random strategies draw from
    the global :mod:`random` module, not from the policy's ``rng``.

    Args:
        wait: An instance of a ``tenacity.wait.wait_base`` subclass.
    """

    __slots__ = ("_retrying", "wait")

    def __init__(self, wait: Any) -> None:
        import tenacity  # only reached for objects that come from tenacity

        self.wait = wait
        self._retrying = tenacity.Retrying()

    def __call__(self, attempt: int, previous: float, rng: random.Random, /) -> float:
        return self.delay_for(attempt, None, None)

    def delay_for(self, attempt: int, error: BaseException | None, result: Any) -> float:
        """The delay after ``attempt`` failed with ``error`` (or returned ``result``)."""
        return max(0.0, float(self.wait(tenacity_state(self._retrying, attempt, error, result))))

    def __repr__(self) -> str:
        return f"TenacityBackoff({self.wait!r})"


def from_tenacity(value: object) -> bool:
    """Whether ``value``'s class, or one of its bases, comes from tenacity (read without
    importing tenacity, so a user's subclass of a tenacity base is recognised too)."""
    return any(
        (getattr(cls, "__module__", "") or "").split(".")[0] == "tenacity"
        for cls in type(value).__mro__
    )


def as_backoff(value: object, owner: str = "Retry", argument: str = "backoff") -> Backoff:
    """Return ``value`` as a :class:`Backoff`: a strategy as is, a tenacity ``wait_*``
    object adapted with :class:`TenacityBackoff`.

    Raises:
        ConfigError: ``value`` is neither a strategy nor a tenacity wait object.
    """
    if from_tenacity(value):
        import tenacity.wait

        if isinstance(value, tenacity.wait.wait_base):
            return TenacityBackoff(value)
    if isinstance(value, ExponentialBackoff | ConstantBackoff | DecorrelatedBackoff):
        return value
    valid = (
        "a backoff strategy such as ml.backoff.exponential(...), ml.backoff.constant(0.1), "
        "a tenacity wait_* object, or a callable (attempt, previous, rng) -> seconds"
    )
    if isinstance(value, bool | int | float) or inspect.isclass(value) or not callable(value):
        fail(owner, argument, value, valid)
    try:
        signature = inspect.signature(value)
    except ValueError:  # builtins without a signature: trust them
        return value
    except TypeError:
        fail(owner, argument, value, valid)
    try:
        signature.bind(1, 0.0, random.Random())
    except TypeError:
        try:
            signature.bind(None)
        except TypeError:
            fail(owner, argument, value, valid)
        # a function of one argument: tenacity's wait=fn(retry_state), most likely
        fail(owner, argument, value, f"{valid} (a tenacity wait function of a retry_state "
             "is taken as tenacity.wait_combine(fn))")
    return value  # a callable of the right arity: the protocol is structural
