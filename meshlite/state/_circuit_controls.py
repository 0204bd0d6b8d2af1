"""The manual controls and the reading of the breaker's in-process state: a base of
:class:`~meshlite.state._circuit_local.LocalCircuitState`, whose constructor sets
the attributes below and whose transitions these methods run. None of them is on
the per-call path: a dashboard, the admin API, ``from_pybreaker`` and the policy's
``state`` / ``metrics`` call them, under the same lock as the calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._inorder import InOrder
from ._circuit_records import (
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    UNRECORDED,
    CircuitMetrics,
    Transition,
)
from ._circuit_window import FAILED, Window

if TYPE_CHECKING:
    from .._clock import Clock

__all__ = ["CircuitControls"]


class CircuitControls:
    """``force_open``, ``reset``, ``disable``, the starting states ``from_pybreaker``
    sets, :meth:`state` and :meth:`metrics` of a :class:`LocalCircuitState`."""

    _lock: threading.Lock
    _changes: InOrder
    _clock: Clock
    _window: Window
    _min_calls: int
    _state: str
    _opened_at: float | None
    _open_until: float
    _reason: str
    _trial_admitted: int
    gate: int | None
    # (the state machine's transitions, under the lock)
    _begin: Callable[[str], str]
    _open: Callable[[str, float | None], Transition]
    _close: Callable[[str], Transition]
    _record: Callable[[int], Transition | None]
    _skip: Callable[[Transition], None]

    def force_open(self) -> Transition | None:
        """Reject every call until :meth:`reset`."""
        with self._lock:
            previous = self._begin(FORCED_OPEN)
            self._opened_at = self._clock.monotonic()
            self._reason = "forced open"
            if previous is FORCED_OPEN:
                return None
            return Transition(previous, FORCED_OPEN, "forced open", self._changes.draw())

    def reset(self) -> Transition | None:
        """Close the circuit with an empty window."""
        with self._lock:
            transition = self._close("reset")
        if transition.previous is CLOSED:
            self._skip(transition)
            return None
        return transition

    def disable(self) -> Transition | None:
        """Admit every call and record nothing until :meth:`reset`."""
        with self._lock:
            previous = self._begin(DISABLED)
            self._window.clear()
            self._opened_at = None
            self._reason = ""
            self.gate = UNRECORDED
            if previous is DISABLED:
                return None
            return Transition(previous, DISABLED, "disabled", self._changes.draw())

    def start_with_failures(self, count: int) -> None:
        """Start closed with ``count`` failures already in the window (fewer than
        would open it): the consecutive failures another breaker had counted."""
        with self._lock:
            for _ in range(count):
                if self._window.calls + 1 >= self._min_calls:
                    break
                self._record(FAILED)

    def start_open(self, elapsed: float, reason: str) -> None:
        """Open the circuit as if it had opened ``elapsed`` seconds ago."""
        with self._lock:
            transition = self._open(reason, self._clock.monotonic() - elapsed)
        self._skip(transition)  # not under the lock: skipping may deliver what follows

    # -- reading -------------------------------------------------------------------

    def state(self) -> str:
        """The current state; an open circuit whose open period ended reads half-open."""
        with self._lock:
            if self._state is OPEN and self._clock.monotonic() >= self._open_until:
                return HALF_OPEN
            return self._state

    def metrics(self) -> CircuitMetrics:
        """A snapshot of the state and the window."""
        with self._lock:
            now = self._clock.monotonic()
            w = self._window
            w.expire(now)
            state, retry_after = self._state, None
            if state is OPEN:
                if now >= self._open_until:
                    state = HALF_OPEN
                else:
                    retry_after = self._open_until - now
            calls = w.calls
            return CircuitMetrics(
                state=state, calls=calls, failures=w.failures, slow_calls=w.slow,
                failure_rate=w.failures / calls if calls else 0.0,
                slow_call_rate=w.slow / calls if calls else 0.0,
                opened_at=self._opened_at, retry_after=retry_after,
                trial_calls=self._trial_admitted if self._state is HALF_OPEN else 0,
                reason=self._reason,
            )
