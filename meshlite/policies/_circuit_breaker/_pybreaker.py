"""Adapting a ``pybreaker.CircuitBreaker`` (pybreaker is imported only here, on use)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..._clock import Clock
from ..._validate import fail
from ...state._base import StoreUnavailableError, fall_back

if TYPE_CHECKING:
    from ._policy import CircuitBreaker

__all__ = ["adapt"]

_OWNER = "CircuitBreaker.from_pybreaker"
_REASON = "pybreaker had opened it"


def _not_excluded(excluded: tuple[Any, ...]) -> Callable[[BaseException], bool]:
    """``failure_on`` that mirrors ``pybreaker.CircuitBreaker.is_system_error``."""
    types = tuple(e for e in excluded if isinstance(e, type))
    predicates = tuple(e for e in excluded if not isinstance(e, type) and callable(e))

    def is_failure(error: BaseException) -> bool:
        if types and isinstance(error, types):
            return False
        return not any(p(error) for p in predicates)

    return is_failure


def _open_elapsed(breaker: Any, reset_timeout: float) -> float:
    """Seconds the pybreaker breaker has been open (0 when unknown: a full open period)."""
    # pybreaker keeps the opening instant (aware UTC wall time) only in its storage.
    opened_at = getattr(getattr(breaker, "_state_storage", None), "opened_at", None)
    if not isinstance(opened_at, datetime):
        return 0.0
    if opened_at.tzinfo is None:
        opened_at = opened_at.replace(tzinfo=UTC)
    elapsed = (datetime.now(UTC) - opened_at).total_seconds()
    return min(max(0.0, elapsed), reset_timeout)


def adapt(cls: type[CircuitBreaker], breaker: Any, clock: Clock | None,
          options: dict[str, Any]) -> CircuitBreaker:
    """Build ``cls`` from a pybreaker breaker (see ``CircuitBreaker.from_pybreaker``)."""
    try:
        import pybreaker
    except ImportError:
        fail(_OWNER, "cb", breaker, "a pybreaker.CircuitBreaker (pybreaker is not installed)")
    if not isinstance(breaker, pybreaker.CircuitBreaker):
        fail(_OWNER, "cb", breaker, "a pybreaker.CircuitBreaker")
    fail_max, reset_timeout = breaker.fail_max, breaker.reset_timeout
    excluded: tuple[Any, ...] = tuple(breaker.excluded_exceptions or ())
    arguments: dict[str, Any] = {
        "failure_rate": 1.0,
        "window": fail_max,
        "window_type": "count",
        "min_calls": fail_max,
        "open_seconds": reset_timeout,
        "half_open_calls": 1,
        "failure_on": _not_excluded(excluded) if excluded else Exception,
        "name": breaker.name or None,
    }
    arguments.update(options)  # (store=, name=, slow_call_seconds=... given by the caller)
    adapted = cls(**arguments, clock=clock)
    state = breaker.current_state
    if state == pybreaker.STATE_OPEN:
        elapsed = _open_elapsed(breaker, float(reset_timeout))
        _start_open(adapted, elapsed)
    elif state == pybreaker.STATE_HALF_OPEN:
        # Its open period is over: start open with no time left, i.e. half-open.
        _start_open(adapted, float(reset_timeout))
    else:
        # Closed after some consecutive failures: the next fail_max - count open it.
        adapted._core.start_with_failures(int(breaker.fail_counter or 0))
    return adapted


def _start_open(adapted: CircuitBreaker, elapsed: float) -> None:
    """Open the adopted breaker as if ``elapsed`` seconds ago: with a store, the shared
    state (every process), and the in-process one its fallback uses."""
    adapted._core.start_open(elapsed, _REASON)
    shared, store = adapted._shared, adapted._shared_store
    if shared is not None and store is not None:
        try:
            shared.start_open(elapsed, _REASON)
        except StoreUnavailableError as error:
            fall_back(adapted, store, None, error, step="manage")
