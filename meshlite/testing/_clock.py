"""FakeClock: a clock that only moves when told to, or when everyone sleeps on it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading

from .._arguments import explained
from .._validate import fail, non_negative

__all__ = ["FakeClock"]

# Turns of the event loop the earliest sleeper waits before it moves the clock.
_SETTLE_TURNS = 5


@explained
class FakeClock:
    """A :class:`meshlite.Clock` for tests: no real time passes.

    ``monotonic()`` starts at ``start`` and moves only by :meth:`advance` or by
    sleeping on the clock. ``sleep(s)`` returns at once, the clock moved to at
    least ``s`` after the moment it was called. ``await asleep(s)`` lets other
    tasks run, and the earliest sleeper moves the clock to its wake-up time (as
    trio's ``MockClock`` with autojump), so concurrent sleepers wake in order.

    Example::

        clock = FakeClock()
        breaker = ml.CircuitBreaker(open_seconds=30.0, clock=clock)
        clock.advance(30.0)   # the open period is over, without waiting
    """

    def __init__(self, start: float = 0.0) -> None:
        if (isinstance(start, bool) or not isinstance(start, int | float)
                or not math.isfinite(start)):
            fail("FakeClock", "start", start, "a finite number")
        self._now = float(start)
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, int]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []
        """Every duration slept on this clock, in order (handy for asserting backoff)."""

    def monotonic(self) -> float:
        """The fake time, in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (a finite number >= 0).

        Raises:
            ConfigError: ``seconds`` is negative, not finite or not a number.
        """
        seconds = non_negative("FakeClock.advance", "seconds", seconds)
        with self._lock:
            self._now += seconds

    def _move_to(self, instant: float) -> None:
        with self._lock:
            if instant > self._now:
                self._now = instant

    def sleep(self, seconds: float) -> None:
        """Return at once, with the clock moved to ``seconds`` after the call began."""
        self.sleeps.append(seconds)
        self._move_to(self._now + max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        """Yield to other tasks until this sleeper is the earliest, then jump to its wake-up.

        The earliest sleeper moves the clock only after it has stayed the earliest for
        a few turns of the event loop, so tasks that are still runnable (a hedge just
        started by a timer, a task just woken) get to run, and to sleep themselves,
        before time jumps.
        """
        self.sleeps.append(seconds)
        entry = (self._now + max(0.0, seconds), next(self._seq))
        with self._lock:
            heapq.heappush(self._sleepers, entry)
        turns_first = 0
        try:
            while True:
                await asyncio.sleep(0)
                if self._now >= entry[0]:
                    return
                if self._sleepers and self._sleepers[0] == entry:
                    turns_first += 1
                    if turns_first >= _SETTLE_TURNS:
                        self._move_to(entry[0])
                        return
                else:
                    turns_first = 0
        finally:
            with self._lock:
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
