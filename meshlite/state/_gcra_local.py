"""GCRA state: one theoretical arrival time (TAT) per key, behind a two-method store.

The generic cell rate algorithm keeps, per key, the instant at which the next call
would arrive if calls came exactly every ``interval`` seconds. A call arriving at
``now`` conforms when ``max(tat, now) - tau <= now``, where ``tau = (burst - 1) *
interval`` is the tolerance that lets a burst through. Admitting (or reserving a
later slot for) a call moves the TAT on by one ``interval``. One float of state,
O(1) per call, exact, and no timer: a waiter knows its own slot when it arrives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from .._fork import fork_safe

__all__ = ["GcraStore", "LocalGcra", "LocalGcraCell"]

_ROUNDING = 1e-9
"""A wait this small (as a fraction of the interval) counts as none, so that float
rounding in the TAT (0.1 added three times is 0.30000000000000004) never makes a call
arriving exactly at its slot wait a few attoseconds, or be rejected for them."""


class GcraStore(Protocol):
    """Where a rate limit keeps its GCRA state; a Redis store implements the same two
    methods atomically (one ``EVAL`` each) so replicas share one quota.

    ``reserve`` returns the seconds from ``now`` until the call's slot (``<= 0``
    means now). The slot is taken, and the TAT moved on, only when that wait is
    ``<= limit``; otherwise nothing changes and the wait tells the caller when to
    come back. ``release`` gives a reserved slot back when its caller gave up
    waiting, if no later call has reserved one since.

    :class:`LocalGcraCell` also offers ``gate``, the same update inlined into a
    handler, which the policy uses for keyless in-memory limits.
    """

    def reserve(self, key: Hashable, now: float, limit: float) -> float: ...

    def release(self, key: Hashable, slot: float) -> None: ...

    def __len__(self) -> int:
        """Keys whose state this process holds (0 for a keyless limiter)."""
        ...


class LocalGcraCell:
    """The in-memory state of a keyless limiter: one TAT under one lock."""

    __slots__ = ("_acquire", "_interval", "_lock", "_release", "_rounding", "_tat", "_tau")

    def __init__(self, interval: float, tau: float) -> None:
        self._interval = interval
        self._tau = tau
        self._rounding = interval * _ROUNDING
        self._tat = float("-inf")
        self._lock = fork_safe(threading.Lock())
        # Bound once: calling acquire/release costs less than ``with lock`` per call.
        self._acquire = self._lock.acquire
        self._release = self._lock.release

    def reserve(self, key: Hashable, now: float, limit: float) -> float:
        """See :class:`GcraStore`; ``key`` is ignored."""
        self._acquire()
        try:
            tat = self._tat
            if tat < now:
                tat = now
            wait = tat - self._tau - now
            if wait <= self._rounding:
                self._tat = tat + self._interval
                return 0.0
            if wait <= limit:
                self._tat = tat + self._interval
            return wait
        finally:
            self._release()

    def gate(self, monotonic: Callable[[], float], call_next: Callable[[Any], Any],
             busy: Callable[[Any, float], Any]) -> Callable[[Any], Any]:
        """A handler that admits a call due now with one locked update and calls on,
        and hands any other call to ``busy(ctx, now)``.

        The GCRA update of :meth:`reserve`, inlined into the handler: the admitted
        path of a keyless limiter then costs one function frame, not two.
        """
        acquire, release = self._acquire, self._release
        tau, interval, rounding = self._tau, self._interval, self._rounding
        cell = self

        def handle(ctx: Any) -> Any:
            now = monotonic()
            acquire()
            try:
                tat = cell._tat
                if tat < now:
                    tat = now
                due = tat - tau - now <= rounding
                if due:
                    cell._tat = tat + interval
            finally:
                release()
            if due:
                return call_next(ctx)
            return busy(ctx, now)

        return handle

    def release(self, key: Hashable, slot: float) -> None:
        """See :class:`GcraStore`; ``key`` is ignored."""
        interval = self._interval
        with self._lock:
            # The slot is ours to give back only if the TAT still ends right after it:
            # any later reservation moved it on by at least one more interval.
            if abs(self._tat - interval - self._tau - slot) < interval / 2:
                self._tat -= interval

    def __len__(self) -> int:
        return 0


class LocalGcra:
    """The in-memory state of a keyed limiter: a TAT per key in an LRU of ``max_keys``.

    Evicting a key forgets its TAT, so if it comes back it starts with a full burst.
    Every access (admitted or not) marks a key as recently used, so a key that keeps
    hammering the limit is the last to be forgotten.
    """

    __slots__ = ("_acquire", "_interval", "_lock", "_max_keys", "_release", "_rounding",
                 "_tats", "_tau")

    def __init__(self, interval: float, tau: float, max_keys: int) -> None:
        self._interval = interval
        self._tau = tau
        self._rounding = interval * _ROUNDING
        self._max_keys = max_keys
        self._tats: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = fork_safe(threading.Lock())
        self._acquire = self._lock.acquire
        self._release = self._lock.release

    def reserve(self, key: Hashable, now: float, limit: float) -> float:
        """See :class:`GcraStore`."""
        tats = self._tats
        self._acquire()
        try:
            # A new key is never over its limit (its wait is -tau <= 0 <= limit), so
            # it is always stored before move_to_end below.
            tat = tats.get(key, now)
            if tat < now:
                tat = now
            wait = tat - self._tau - now
            if wait <= self._rounding:
                wait = 0.0
            if wait <= limit:
                tats[key] = tat + self._interval
            tats.move_to_end(key)
            if len(tats) > self._max_keys:
                tats.popitem(last=False)
            return wait
        finally:
            self._release()

    def release(self, key: Hashable, slot: float) -> None:
        """See :class:`GcraStore`."""
        interval = self._interval
        with self._lock:
            tat = self._tats.get(key)
            if tat is not None and abs(tat - interval - self._tau - slot) < interval / 2:
                self._tats[key] = tat - interval

    def __len__(self) -> int:
        return len(self._tats)
