"""Options of the circuit breaker, validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._predicates import ErrorFilter, error_predicate
from ..._validate import at_least, fail, fraction, optional_positive, positive
from ...state._base import check_store

__all__ = [
    "DEFAULT_FAILURE_ON",
    "DEFAULT_FAILURE_RATE",
    "DEFAULT_HALF_OPEN_CALLS",
    "DEFAULT_MIN_CALLS",
    "DEFAULT_OPEN_SECONDS",
    "DEFAULT_SLOW_CALL_RATE",
    "DEFAULT_WINDOW",
    "DEFAULT_WINDOW_TYPE",
    "MAX_WINDOW_CALLS",
    "MAX_WINDOW_SECONDS",
    "CircuitBreakerOptions",
]

DEFAULT_FAILURE_RATE = 0.5
"""Open when at least half of the calls in the window failed."""

DEFAULT_WINDOW = 100
"""The last 100 calls (count window) or seconds (time window)."""

DEFAULT_WINDOW_TYPE = "count"

DEFAULT_MIN_CALLS = 20
"""Fewer calls than this in the window never open the circuit."""

DEFAULT_SLOW_CALL_RATE = 1.0

DEFAULT_OPEN_SECONDS = 30.0

DEFAULT_HALF_OPEN_CALLS = 5

MAX_WINDOW_CALLS = 1_000_000
"""The largest count window (it keeps one byte per call)."""

MAX_WINDOW_SECONDS = 86_400.0
"""The largest time window, one day (it keeps one bucket per second)."""

DEFAULT_FAILURE_ON: type[BaseException] = Exception
"""Any error counts as a failure (rejections by inner policies excepted)."""

_OWNER = "CircuitBreaker"


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerOptions:
    """Validated options of :class:`~meshlite.CircuitBreaker` (see its docstring)."""

    failure_rate: float = DEFAULT_FAILURE_RATE
    window: int | float = DEFAULT_WINDOW
    window_type: str = DEFAULT_WINDOW_TYPE
    min_calls: int = DEFAULT_MIN_CALLS
    slow_call_seconds: float | None = None
    slow_call_rate: float = DEFAULT_SLOW_CALL_RATE
    open_seconds: float = DEFAULT_OPEN_SECONDS
    half_open_calls: int = DEFAULT_HALF_OPEN_CALLS
    failure_on: ErrorFilter = DEFAULT_FAILURE_ON
    name: str | None = None
    store: Any = None

    def __post_init__(self) -> None:
        fraction(_OWNER, "failure_rate", self.failure_rate)
        if self.window_type not in ("count", "time"):
            fail(_OWNER, "window_type", self.window_type, "'count' or 'time'")
        if self.window_type == "count":
            if at_least(_OWNER, "window", self.window, 1) > MAX_WINDOW_CALLS:
                fail(_OWNER, "window", self.window,
                     f"at most {MAX_WINDOW_CALLS:,} calls for a count window")
        elif positive(_OWNER, "window", self.window) > MAX_WINDOW_SECONDS:
            fail(_OWNER, "window", self.window,
                 f"at most {MAX_WINDOW_SECONDS:g} seconds for a time window")
        at_least(_OWNER, "min_calls", self.min_calls, 1)
        optional_positive(_OWNER, "slow_call_seconds", self.slow_call_seconds)
        fraction(_OWNER, "slow_call_rate", self.slow_call_rate)
        positive(_OWNER, "open_seconds", self.open_seconds)
        at_least(_OWNER, "half_open_calls", self.half_open_calls, 1)
        error_predicate(_OWNER, "failure_on", self.failure_on)
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            fail(_OWNER, "name", self.name, "a non-empty string or None")
        check_store(_OWNER, self.store, "circuit")
        if self.store is not None and self.name is None:
            fail(_OWNER, "name", None,
                 "set when store is given: the name every process shares the breaker by")

    @property
    def effective_min_calls(self) -> int:
        """``min_calls``, capped at the window size for count windows.

        A count window never holds more than ``window`` calls, so a larger
        ``min_calls`` would silently keep the circuit closed forever.
        """
        if self.window_type == "count":
            return min(self.min_calls, int(self.window))
        return self.min_calls
