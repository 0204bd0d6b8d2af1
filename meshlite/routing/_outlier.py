"""Passive health: outlier detection ejects backends that keep failing."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .._arguments import explained
from .._clock import Clock
from .._errors import ConfigError, RejectedError
from .._predicates import ErrorFilter, error_predicate
from .._printable import error_shown
from .._validate import at_least, fail, fraction, optional_clock, positive
from ._endpoint import Endpoint

__all__ = [
    "DEFAULT_BASE_EJECTION_SECONDS",
    "DEFAULT_CONSECUTIVE_FAILURES",
    "DEFAULT_FAILURE_RATE_WINDOW",
    "DEFAULT_MAX_EJECTION_PERCENT",
    "DEFAULT_MAX_EJECTION_SECONDS",
    "OutlierDetection",
    "OutlierDetectionOptions",
    "backend_failure",
]

DEFAULT_CONSECUTIVE_FAILURES = 5
DEFAULT_BASE_EJECTION_SECONDS = 30.0
DEFAULT_MAX_EJECTION_SECONDS = 300.0
"""Envoy's default cap on one ejection."""
DEFAULT_MAX_EJECTION_PERCENT = 50.0
DEFAULT_FAILURE_RATE_WINDOW = 20
"""How many recent attempts per backend ``failure_rate`` is measured over."""


def backend_failure(error: BaseException) -> bool:
    """Whether ``error``, ending an attempt, may count against its backend: a
    rejection or a configuration error is about this process, never the backend's
    (routing leaves such an attempt out of the backend's counts and latencies)."""
    return not isinstance(error, RejectedError | ConfigError)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetectionOptions:
    """Validated options of :class:`OutlierDetection`."""

    consecutive_failures: int | None = DEFAULT_CONSECUTIVE_FAILURES
    failure_rate: float | None = None
    failure_rate_window: int = DEFAULT_FAILURE_RATE_WINDOW
    base_ejection_seconds: float = DEFAULT_BASE_EJECTION_SECONDS
    max_ejection_seconds: float = DEFAULT_MAX_EJECTION_SECONDS
    max_ejection_percent: float = DEFAULT_MAX_EJECTION_PERCENT
    failure_on: ErrorFilter | None = None

    def __post_init__(self) -> None:
        owner = "OutlierDetection"
        if self.consecutive_failures is not None:
            at_least(owner, "consecutive_failures", self.consecutive_failures, 1)
        if self.failure_rate is not None:
            object.__setattr__(self, "failure_rate",
                               fraction(owner, "failure_rate", self.failure_rate))
        at_least(owner, "failure_rate_window", self.failure_rate_window, 1)
        base = positive(owner, "base_ejection_seconds", self.base_ejection_seconds)
        cap = positive(owner, "max_ejection_seconds", self.max_ejection_seconds)
        if cap < base:
            fail(owner, "max_ejection_seconds", self.max_ejection_seconds,
                 f">= base_ejection_seconds ({base})")
        object.__setattr__(self, "base_ejection_seconds", base)
        object.__setattr__(self, "max_ejection_seconds", cap)
        pct = self.max_ejection_percent
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
            fail(owner, "max_ejection_percent", pct, "a number in [0, 100]")
        object.__setattr__(self, "max_ejection_percent", float(pct))
        if self.failure_on is not None:
            error_predicate(owner, "failure_on", self.failure_on)


@explained
class OutlierDetection:
    """Eject a backend that keeps failing, for a while, and let it back by itself.

    A failure is any error of an attempt on that backend (connection errors,
    timeouts; for HTTP also 5xx and 429 answers), except meshlite's own rejections.
    A backend is ejected after ``consecutive_failures`` failures in a row, or when
    ``failure_rate`` of its last ``failure_rate_window`` attempts failed (checked at
    each failure, once the window is full). Its n-th
    ejection lasts ``base_ejection_seconds * n`` (at most ``max_ejection_seconds``,
    where the count stops growing); the count drops by one for every
    ``base_ejection_seconds`` it then stays in.
    Never more than ``max_ejection_percent`` of a service's backends are out at once
    (so with the default 50%, a service needs two backends before one can go out).
    The streak (or window) that reaches its limit starts over at that failure,
    whether the backend goes out or the cap skips it; it is counted under the
    endpoint's lock, so threads failing at once eject it once, at exactly the limit.
    A success ends the streak and enters the window in the endpoint's own
    bookkeeping (``Endpoint.succeeded``), under the lock it takes anyway.

    Args:
        consecutive_failures: Failures in a row that eject, >= 1, or None to turn off.
        failure_rate: Share of failures in (0, 1] over the window that ejects, or None.
        base_ejection_seconds: Length of a first ejection, > 0.
        max_ejection_percent: Most backends out at once, in percent, 0..100.
        failure_rate_window: Attempts the failure rate is measured over, >= 1.
        max_ejection_seconds: Cap on one ejection, >= base_ejection_seconds.
        failure_on: Which errors count (same forms as ``on=`` of policies); default:
            every error. A meshlite rejection or a ``ConfigError`` never counts.
        clock: Clock for the service using it, when the service has none of its own.

    Raises:
        ConfigError: a bad argument.
    """

    kind = "outlier_detection"

    def __init__(
        self,
        consecutive_failures: int | None = DEFAULT_CONSECUTIVE_FAILURES,
        failure_rate: float | None = None,
        base_ejection_seconds: float = DEFAULT_BASE_EJECTION_SECONDS,
        max_ejection_percent: float = DEFAULT_MAX_EJECTION_PERCENT,
        *,
        failure_rate_window: int = DEFAULT_FAILURE_RATE_WINDOW,
        max_ejection_seconds: float = DEFAULT_MAX_EJECTION_SECONDS,
        failure_on: ErrorFilter | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.options = OutlierDetectionOptions(
            consecutive_failures=consecutive_failures,
            failure_rate=failure_rate,
            failure_rate_window=failure_rate_window,
            base_ejection_seconds=base_ejection_seconds,
            max_ejection_seconds=max_ejection_seconds,
            max_ejection_percent=max_ejection_percent,
            failure_on=failure_on,
        )
        self.clock = optional_clock("OutlierDetection", clock)
        on = self.options.failure_on
        self._counts = (backend_failure if on is None
                        else error_predicate("OutlierDetection", "failure_on", on))

    def prepare(self, endpoint: Endpoint) -> None:
        """Set up ``endpoint``'s window when ``failure_rate`` is on."""
        o = self.options
        if o.failure_rate is not None and endpoint.outcomes is None:
            endpoint.outcomes = deque(maxlen=o.failure_rate_window)

    def failed(self, endpoint: Endpoint, error: BaseException) -> str | None:
        """Record a failed attempt; return why ``endpoint`` should be ejected, or None.

        The streak (and the window) that reaches a limit starts over at once, under
        the endpoint's lock, so of attempts failing at the same time exactly one
        returns a reason, and one failing before the ejection is made counts
        towards the next streak instead of being forgiven with this one."""
        if not self._counts(error):
            return None
        lock = endpoint._lock
        lock.acquire()
        try:
            streak, observed, window = self._count(endpoint)
        finally:
            lock.release()
        if observed is None and streak is None:
            return None
        # (The reason is logged and shown: a URL's token in the error is masked.)
        last = error_shown(error)
        if observed is None:
            return f"{streak} consecutive failures (last: {last})"
        return f"failure rate {observed:.0%} over its last {window} attempts (last: {last})"

    def _count(self, endpoint: Endpoint) -> tuple[int | None, float | None, int]:
        # Caller holds the endpoint's lock. Returns (the streak that ejects, None,
        # 0), (None, the failure rate that ejects, its window), or (None, None, 0).
        o = self.options
        streak = endpoint.consecutive_failures = endpoint.consecutive_failures + 1
        limit = o.consecutive_failures
        outcomes = endpoint.outcomes
        if limit is not None and streak >= limit:
            endpoint.consecutive_failures = 0
            if outcomes is not None:
                outcomes.clear()
            return streak, None, 0
        if o.failure_rate is None:
            return None, None, 0
        if outcomes is None:
            self.prepare(endpoint)
            outcomes = endpoint.outcomes
            assert outcomes is not None  # (failure_rate is on)
        outcomes.append(True)
        window = len(outcomes)
        if window == o.failure_rate_window:
            observed = sum(outcomes) / window
            if observed >= o.failure_rate:
                endpoint.consecutive_failures = 0
                outcomes.clear()
                return None, observed, window
        return None, None, 0

    def may_eject(self, ejected: int, total: int) -> bool:
        """Whether one more of ``total`` backends may go out while ``ejected`` are."""
        return (ejected + 1) * 100.0 <= self.options.max_ejection_percent * total

    def eject(self, endpoint: Endpoint, now: float, reason: str) -> float:
        """Eject ``endpoint`` at ``now``; returns the ejection's length in seconds."""
        o = self.options
        base = o.base_ejection_seconds
        if endpoint.returned_at is not None:
            # Time spent back in rotation since the last ejection earns forgiveness.
            served = int((now - endpoint.returned_at) // base)
            endpoint.ejections = max(0, endpoint.ejections - served)
        # The count stops growing once an ejection lasts the cap, as Envoy's
        # multiplier does: a backend out a hundred times is forgiven in as many
        # base periods as one whose ejections just reached the cap.
        if base * endpoint.ejections < o.max_ejection_seconds:
            endpoint.ejections += 1
        seconds = min(base * endpoint.ejections, o.max_ejection_seconds)
        endpoint.ejected_until = now + seconds
        endpoint.ejected_reason = reason
        # (The streak and window that led here started over when failed() decided.)
        return seconds

    def __repr__(self) -> str:
        o = self.options
        return (f"OutlierDetection(consecutive_failures={o.consecutive_failures!r}, "
                f"failure_rate={o.failure_rate!r}, "
                f"base_ejection_seconds={o.base_ejection_seconds!r}, "
                f"max_ejection_percent={o.max_ejection_percent!r})")

