"""Sliding windows of call outcomes: the last N calls, or the calls of the last N seconds.

Each outcome is a small code: bit 0 set for a failure, bit 1 set for a slow call.
A window keeps running totals (``calls``, ``failures``, ``slow``) so reading the
rates never walks the window. Windows are not thread-safe: the breaker's state
object calls them under its lock.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["FAILED", "SLOW", "CountWindow", "TimeWindow", "Window"]

FAILED = 1
"""Outcome bit: the call failed."""

SLOW = 2
"""Outcome bit: the call took at least ``slow_call_seconds``."""


class Window(Protocol):
    """What the state machine needs of a window."""

    calls: int
    failures: int
    slow: int

    def record(self, code: int, now: float) -> None:
        """Add one outcome (``FAILED`` / ``SLOW`` bits) observed at ``now``."""
        ...

    def expire(self, now: float) -> None:
        """Forget outcomes that fell out of the window by ``now``."""
        ...

    def clear(self) -> None:
        """Forget every outcome."""
        ...


class CountWindow:
    """The outcomes of the last ``size`` calls, in a ring buffer.

    Recording is O(1): the outcome pushed out of the ring is subtracted from the
    running totals and the new one added.
    """

    __slots__ = ("_next", "_ring", "_size", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ring = bytearray(size)
        self._next = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, code: int, now: float) -> None:
        i = self._next
        ring = self._ring
        old = ring[i]
        ring[i] = code
        self._next = 0 if i + 1 == self._size else i + 1
        # Slots of a ring that is not full yet hold 0, so ``old`` is only set once full.
        if old:
            self.failures -= old & FAILED
            self.slow -= old >> 1
        if self.calls < self._size:
            self.calls += 1
        if code:
            self.failures += code & FAILED
            self.slow += code >> 1

    def expire(self, now: float) -> None:
        # Outcomes leave a count window only when newer ones push them out.
        return None

    def clear(self) -> None:
        self._ring = bytearray(self._size)
        self._next = 0
        self.calls = self.failures = self.slow = 0


class TimeWindow:
    """The outcomes of the last ``seconds`` seconds, in per-second buckets.

    The window is cut into ``ceil(seconds)`` buckets (one second wide for whole
    seconds). Recording adds to the newest bucket; moving to a later bucket
    subtracts and empties the buckets that fell out, each at most once per pass
    of the clock, so recording is O(1) amortised. The window's resolution is one
    bucket: an outcome is forgotten between ``seconds - width`` and ``seconds``
    after it was recorded.
    """

    __slots__ = ("_b_calls", "_b_failures", "_b_slow", "_count", "_head", "_width",
                 "calls", "failures", "slow")

    def __init__(self, seconds: float) -> None:
        self._count = max(1, math.ceil(seconds))
        self._width = seconds / self._count
        self._b_calls = [0] * self._count
        self._b_failures = [0] * self._count
        self._b_slow = [0] * self._count
        self._head = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, code: int, now: float) -> None:
        self.expire(now)
        i = self._head % self._count
        self._b_calls[i] += 1
        self.calls += 1
        if code:
            failed, slow = code & FAILED, code >> 1
            self._b_failures[i] += failed
            self._b_slow[i] += slow
            self.failures += failed
            self.slow += slow

    def expire(self, now: float) -> None:
        bucket = math.floor(now / self._width)
        head = self._head
        if bucket <= head:
            return
        count = self._count
        self._head = bucket
        if bucket - head >= count:
            # Everything is older than the window: drop it all at once.
            if self.calls:
                self._wipe()
            return
        for k in range(head + 1, bucket + 1):
            i = k % count
            if self._b_calls[i]:
                self.calls -= self._b_calls[i]
                self.failures -= self._b_failures[i]
                self.slow -= self._b_slow[i]
                self._b_calls[i] = self._b_failures[i] = self._b_slow[i] = 0

    def clear(self) -> None:
        if self.calls:
            self._wipe()

    def _wipe(self) -> None:
        self._b_calls = [0] * self._count
        self._b_failures = [0] * self._count
        self._b_slow = [0] * self._count
        self.calls = self.failures = self.slow = 0
