"""The circuit breaker: a state machine over a sliding window of outcomes.

- ``_options``: the validated options and ``DEFAULT_*`` constants (its events are
  the engine's, ``meshlite._events``, since routing and the dashboard read them).
- ``_policy``: the policy: construction, its events and rejections, its handlers.
- ``_controls``: its reading and manual controls (``state``, ``metrics``,
  ``force_open``...), its base class.
- ``_handlers``: the per-call sync and async handlers.
- ``_shared``: the paths of a breaker whose state lives in a store.
- ``_pybreaker``: ``CircuitBreaker.from_pybreaker``.

The state machine, its windows and records live in ``meshlite.state``
(``_circuit_local``, ``_circuit_window``, ``_circuit_records``), beside the shared
state that replaces them.
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
