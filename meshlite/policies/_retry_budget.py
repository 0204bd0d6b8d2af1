"""RetryBudget: caps retries as a share of recent calls (Finagle's ``RetryBudget``)."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator

from .._arguments import explained
from .._clock import SYSTEM_CLOCK, Clock
from .._fork import fork_safe
from .._validate import fail, non_negative, positive

__all__ = [
    "DEFAULT_BUDGET_MIN_PER_SECOND",
    "DEFAULT_BUDGET_RATIO",
    "DEFAULT_BUDGET_TTL",
    "RetryBudget",
]

DEFAULT_BUDGET_RATIO = 0.2
"""Retries allowed per call made, on top of the reserve."""

DEFAULT_BUDGET_MIN_PER_SECOND = 10.0
"""Retries per second always allowed, however few calls are made."""

DEFAULT_BUDGET_TTL = 10.0
"""Seconds a deposit (and a withdrawal) counts for."""

_SLICES = 10


@explained
class RetryBudget:
    """Caps retries as a share of recent calls, as Finagle's ``RetryBudget`` does.

    Every call deposits ``ratio`` of a token, every retry withdraws one, and a reserve
    of ``min_per_second * ttl`` tokens lets a quiet client retry at all. Deposits and
    withdrawals count for ``ttl`` seconds (kept in ten slices of ``ttl / 10``), so
    over any ``ttl`` the retries never exceed ``min_per_second * ttl + ratio * calls``
    and an outage cannot multiply the load on a struggling service. Thread-safe; one
    instance may be shared by several :class:`meshlite.Retry` policies.

    Args:
        ratio: Tokens deposited per call (>= 0); 0.2 allows one retry per 5 calls.
        min_per_second: Retries per second allowed regardless of traffic (>= 0).
        ttl: Seconds a deposit counts for (> 0).
        clock: Where time is read (default: the system clock).

    Raises:
        ConfigError: an argument is out of range.
    """

    __slots__ = ("_clock", "_current", "_lock", "_monotonic", "_reads", "_reserve", "_slices",
                 "_width", "_withdrawals", "min_per_second", "ratio", "ttl")

    def __init__(
        self,
        ratio: float = DEFAULT_BUDGET_RATIO,
        min_per_second: float = DEFAULT_BUDGET_MIN_PER_SECOND,
        ttl: float = DEFAULT_BUDGET_TTL,
        clock: Clock | None = None,
    ) -> None:
        self.ratio = non_negative("RetryBudget", "ratio", ratio)
        self.min_per_second = non_negative("RetryBudget", "min_per_second", min_per_second)
        self.ttl = positive("RetryBudget", "ttl", ttl)
        if clock is not None and not isinstance(clock, Clock):
            fail("RetryBudget", "clock", clock, "a clock with monotonic(), sleep() and asleep()")
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._monotonic = self._clock.monotonic
        self._reserve = self.min_per_second * self.ttl
        self._width = self.ttl / _SLICES
        self._lock = fork_safe(threading.Lock())
        # Slot i is (slice number, deposit counter) for the slice numbered i mod 10,
        # and _current is (end time, counter) of the slice deposits go to now. A
        # deposit calls next() on that counter without the lock: one atomic C call,
        # and reading one immutable tuple keeps end time and counter paired, so a
        # deposit racing a rotation lands in its own slice or is dropped (the budget
        # may under-count calls, never over-count). Readers take the lock and read a
        # counter with next() as well, counting their own reads in _reads.
        self._slices: list[tuple[int, Iterator[int]]] = [
            (-(2**62), itertools.count()) for _ in range(_SLICES)
        ]
        self._current: tuple[float, Iterator[int]] = (-math.inf, itertools.count())
        self._reads = [0] * _SLICES
        self._withdrawals = [0] * _SLICES

    def deposit(self) -> None:
        """Record one call (``ratio`` tokens). Lock-free but once per slice."""
        end, counter = self._current
        if self._monotonic() < end:
            next(counter)
            return
        with self._lock:
            epoch = math.floor(self._monotonic() / self._width)
            counter = self._slot(epoch)[1]
            self._current = ((epoch + 1) * self._width, counter)
            next(counter)

    def _slot(self, epoch: int) -> tuple[int, Iterator[int]]:
        # With the lock held: the slot of slice ``epoch``, emptied if it held an older one.
        i = epoch % _SLICES
        slot = self._slices[i]
        if slot[0] < epoch:
            slot = self._slices[i] = (epoch, itertools.count())
            self._reads[i] = self._withdrawals[i] = 0
        return slot

    def _balance(self, epoch: int) -> float:
        # With the lock held.
        oldest = epoch - _SLICES
        deposits = withdrawals = 0
        for i, (number, counter) in enumerate(self._slices):
            if number > oldest:
                deposits += next(counter) - self._reads[i]
                self._reads[i] += 1
                withdrawals += self._withdrawals[i]
        return self._reserve + self.ratio * deposits - withdrawals

    def try_withdraw(self) -> bool:
        """Take the token one retry costs; ``False`` (nothing taken) if none is left."""
        return self._take() is not None

    def _take(self) -> int | None:
        """:meth:`try_withdraw`, returning the slice the token was taken in (for
        :meth:`_give_back`), or ``None`` when none is left."""
        with self._lock:
            epoch = math.floor(self._monotonic() / self._width)
            self._slot(epoch)
            # The epsilon absorbs float error in ratio * deposits (0.7 * 10 > 7).
            if self._balance(epoch) < 1.0 - 1e-9:
                return None
            self._withdrawals[epoch % _SLICES] += 1
            return epoch

    def _give_back(self, epoch: int) -> None:
        """Return a token taken in slice ``epoch`` for a retry that was never made (its
        caller was cancelled during the backoff). Into its own slice, so it expires
        when the withdrawal would have; a slice already expired has nothing to return."""
        with self._lock:
            i = epoch % _SLICES
            if self._slices[i][0] == epoch and self._withdrawals[i] > 0:
                self._withdrawals[i] -= 1

    @property
    def balance(self) -> float:
        """Tokens available now: how many retries would be allowed (never below 0).

        Deposits and withdrawals expire separately, so the tokens spent on retries can
        outlast the calls that paid for them: the account is then overdrawn and no
        retry is allowed until the withdrawals expire too, which reads as 0.
        """
        with self._lock:
            return max(0.0, self._balance(math.floor(self._monotonic() / self._width)))

    def __repr__(self) -> str:
        return (f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
                f"ttl={self.ttl!r})")
