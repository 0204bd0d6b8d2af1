"""The circuit breaker: a state machine over a sliding window of outcomes.

- ``_options``: the validated options and ``DEFAULT_*`` constants.
- ``_window``: count and time windows with O(1) running totals.
- ``_records``: state names, transitions, admissions, metrics snapshots.
- ``_state``: the state machine (the part a shared store will replace).
- ``_handlers``: the per-call sync and async handlers.
- ``_policy``: the policy, its events, errors and manual controls.
- ``_pybreaker``: ``CircuitBreaker.from_pybreaker``.
"""

from ...state._circuit_records import CircuitMetrics
from ._options import (
    DEFAULT_FAILURE_ON,
    DEFAULT_FAILURE_RATE,
    DEFAULT_HALF_OPEN_CALLS,
    DEFAULT_MIN_CALLS,
    DEFAULT_OPEN_SECONDS,
    DEFAULT_SLOW_CALL_RATE,
    DEFAULT_WINDOW,
    DEFAULT_WINDOW_TYPE,
    CircuitBreakerOptions,
)
from ._policy import CircuitBreaker

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerOptions",
    "CircuitMetrics",
    "DEFAULT_FAILURE_ON",
    "DEFAULT_FAILURE_RATE",
    "DEFAULT_HALF_OPEN_CALLS",
    "DEFAULT_MIN_CALLS",
    "DEFAULT_OPEN_SECONDS",
    "DEFAULT_SLOW_CALL_RATE",
    "DEFAULT_WINDOW",
    "DEFAULT_WINDOW_TYPE",
]
