"""The breaker's state machine and window, behind the small interface a shared
(Redis-backed) state implements too. Its manual controls and reading are in its
base, :mod:`meshlite.state._circuit_controls`.

Permits. Every admitted call holds an int permit naming the period it was
admitted in: ``2 * epoch`` for a call admitted while closed, ``2 * epoch + 1``
for a half-open trial, :data:`UNRECORDED` while disabled. ``epoch`` grows on
every transition, so an outcome whose permit no longer matches the current
period belongs to a period that has ended and is dropped: a slow call admitted
before the circuit opened cannot count against the fresh window after it closes,
nor as a trial.

The closed-state admission is lock-free: callers read :attr:`gate`, which is the
closed-state permit while closed, :data:`UNRECORDED` while disabled and ``None``
when admission must go through :meth:`acquire`. Recording a fast success is
lock-free too while :attr:`settled` is true: the count window is full and holds
no failure nor slow call, so one more success would change nothing (a success
racing with a failure recorded meanwhile is simply ordered before it).
Everything else runs under one ``threading.Lock``; transitions are returned to
the caller, which emits events after the lock is released (a hook may read the
breaker, or change it). Each transition draws its turn under that lock
(:mod:`meshlite._inorder`), so their events reach hooks in the order they
happened even when the threads that made them hand them over in another order.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from .._fork import after_fork_in_child, fork_safe
from .._inorder import InOrder
from ._circuit_controls import CircuitControls
from ._circuit_records import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Admission,
    Transition,
)
from ._circuit_window import FAILED, SLOW, CountWindow, TimeWindow, Window

if TYPE_CHECKING:
    from .._clock import Clock
    from ._base import CircuitConfig

__all__ = ["LocalCircuitState"]


class LocalCircuitState(CircuitControls):
    """In-process state of one breaker: the state machine, its window and trials.

    The interface (``gate``, ``settled``, :meth:`acquire`, :meth:`on_success`,
    :meth:`on_failure`, :meth:`release`, and from its base the manual controls,
    :meth:`state` and :meth:`metrics`) is what the policy uses, so a store-backed
    state can replace this class without touching the policy.
    """

    def __init__(self, options: CircuitConfig, clock: Clock) -> None:
        o = options
        self._lock = fork_safe(threading.Lock())
        self._changes = InOrder()  # the turns of the transitions' events
        self._clock = clock
        self._timed = o.window_type == "time"
        self._window: Window = (TimeWindow(float(o.window)) if self._timed
                                else CountWindow(int(o.window)))
        # Only a full count window can be settled; a time window needs every call.
        self._full = -1 if self._timed else int(o.window)
        self._min_calls = o.effective_min_calls
        self._failure_rate = o.failure_rate
        self._slow_rate = o.slow_call_rate
        self._slow_seconds = math.inf if o.slow_call_seconds is None else o.slow_call_seconds
        self._open_seconds = o.open_seconds
        self._trials = o.half_open_calls
        self._state = CLOSED
        self._epoch = 0
        self.gate: int | None = 0
        self.settled = False
        self._trial_permit: int | None = None
        self._trial_admitted = self._trial_done = self._trial_failed = self._trial_slow = 0
        self._opened_at: float | None = None
        self._open_until = 0.0
        self._reason = ""
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: a round of trials under way starts over. Its trials in
        flight are the parent's calls, which never end here: their slots stayed
        taken, and the child refused every call for good."""
        transition = None
        with self._lock:
            if self._state is HALF_OPEN:
                transition = self._half_open()  # a new permit: the old one's outcomes are ignored
        if transition is not None:
            self._skip(transition)  # nobody is told

    # -- outcomes ------------------------------------------------------------------

    def on_success(self, permit: int, duration: float) -> Transition | None:
        """Record a call that succeeded after ``duration`` seconds.

        Callers may skip this for a fast success while :attr:`settled` is true.
        """
        if duration < self._slow_seconds:
            if self.settled:
                return None
            code = 0
        else:
            code = SLOW
        if permit & 1:
            return self._trial_outcome(permit, code)
        with self._lock:
            if permit != self.gate:
                return None
            return self._record(code)

    def on_failure(self, permit: int, duration: float) -> Transition | None:
        """Record a call that failed after ``duration`` seconds."""
        code = FAILED | SLOW if duration >= self._slow_seconds else FAILED
        if permit & 1:
            return self._trial_outcome(permit, code)
        with self._lock:
            if permit != self.gate:
                return None
            return self._record(code)

    def release(self, permit: int) -> None:
        """Give back a permit whose call counts as neither success nor failure
        (cancelled, or rejected by an inner policy): a trial slot becomes free."""
        if permit & 1 and permit == self._trial_permit:
            with self._lock:
                if permit == self._trial_permit:
                    self._trial_admitted -= 1

    def _record(self, code: int) -> Transition | None:
        w = self._window
        w.record(code, self._clock.monotonic() if self._timed else 0.0)
        calls = w.calls
        if not (w.failures or w.slow):
            self.settled = calls == self._full
            return None
        self.settled = False
        if calls < self._min_calls:
            return None
        if w.failures / calls >= self._failure_rate:
            return self._open(f"{w.failures} of {calls} calls failed")
        if w.slow / calls >= self._slow_rate:
            return self._open(f"{w.slow} of {calls} calls were slow "
                              f"(>= {self._slow_seconds:g} s)")
        return None

    def _trial_outcome(self, permit: int, code: int) -> Transition | None:
        if permit != self._trial_permit:  # disabled, or a trial of an ended period
            return None
        with self._lock:
            if permit != self._trial_permit:
                return None
            self._trial_done += 1
            self._trial_failed += code & FAILED
            self._trial_slow += code >> 1
            n = self._trials
            if self._trial_done < n:
                return None
            if self._trial_failed / n >= self._failure_rate:
                return self._open(f"{self._trial_failed} of {n} trial calls failed")
            if self._trial_slow / n >= self._slow_rate:
                return self._open(f"{self._trial_slow} of {n} trial calls were slow "
                                  f"(>= {self._slow_seconds:g} s)")
            return self._close(f"{n - self._trial_failed} of {n} trial calls succeeded")

    # -- admission -----------------------------------------------------------------

    def acquire(self) -> Admission:
        """Admit a call when :attr:`gate` is ``None`` (the circuit is not closed)."""
        with self._lock:
            if self.gate is not None:  # closed (or disabled) again since the caller looked
                return Admission(self.gate)
            transition = None
            if self._state is OPEN:
                now = self._clock.monotonic()
                if now < self._open_until:
                    return Admission(None, None, OPEN, self._reason, self._open_until - now)
                transition = self._half_open()
            if self._state is HALF_OPEN:
                if self._trial_admitted < self._trials:
                    self._trial_admitted += 1
                    return Admission(self._trial_permit, transition)
                return Admission(None, transition, HALF_OPEN,
                                 f"all {self._trials} trial calls are taken")
            return Admission(None, None, self._state, self._reason)

    # -- transitions (under the lock) ----------------------------------------------

    def _begin(self, state: str) -> str:
        previous = self._state
        self._epoch += 1
        self.gate = None
        self.settled = False
        self._trial_permit = None
        self._state = state
        return previous

    def _open(self, reason: str, now: float | None = None) -> Transition:
        previous = self._begin(OPEN)
        now = self._clock.monotonic() if now is None else now
        self._opened_at = now
        self._open_until = now + self._open_seconds
        self._reason = reason
        return Transition(previous, OPEN, reason, self._changes.draw())

    def _half_open(self) -> Transition:
        previous = self._begin(HALF_OPEN)
        self._trial_admitted = self._trial_done = self._trial_failed = self._trial_slow = 0
        self._trial_permit = 2 * self._epoch + 1
        return Transition(previous, HALF_OPEN, f"open for {self._open_seconds:g} s",
                          self._changes.draw())

    def _close(self, reason: str) -> Transition:
        previous = self._begin(CLOSED)
        self._window.clear()
        self._opened_at = None
        self._reason = ""
        self.gate = 2 * self._epoch  # last: lock-free readers admit from here on
        return Transition(previous, CLOSED, reason, self._changes.draw())

    @staticmethod
    def _skip(transition: Transition) -> None:
        """Give up the turn of a transition nobody is told of."""
        if transition.turn is not None:
            transition.turn.skip()
