"""FakeClock: a clock that only moves when told to, or when everyone sleeps on it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import time

from .._arguments import explained
from .._validate import fail, non_negative
from ._quiet import io_pending, servers_busy

__all__ = ["DEFAULT_AUTOJUMP_THRESHOLD", "FakeClock"]

# Turns of the event loop the earliest sleeper waits, with nothing else happening,
# before it moves the clock: tasks still runnable (a hedge just started by a timer, a
# task just woken) get to run, and to sleep themselves, before time jumps.
_SETTLE_TURNS = 5

# The same after real I/O was seen: what it woke (a response read, the call that made
# it finishing, a timer cancelled) takes a few turns of the loop to get done.
_SETTLE_AFTER_IO = 20

# How often (real seconds) a settled sleeper looks again when it must not jump at once
# (an ``autojump_threshold`` above 0): often enough for advance() to wake it promptly,
# rarely enough that waiting sleepers do not keep the CPU busy.
_POLL = 0.005

# Real seconds a sleeper waits between looks while a server of the kit is answering.
_YIELD = 0.001

DEFAULT_AUTOJUMP_THRESHOLD = 0.0
"""Real seconds of quiet before a sleeper moves a FakeClock: 0, at once (after a few
turns of the event loop with no I/O to handle)."""


@explained
class FakeClock:
    """A :class:`meshlite.Clock` for tests: no real time passes.

    ``monotonic()`` starts at ``start`` and moves only by :meth:`advance` or by
    sleeping on the clock. ``sleep(s)`` returns at once, the clock moved to at
    least ``s`` after the moment it was called. ``await asleep(s)`` lets other
    tasks run, and when the event loop is quiet the earliest sleeper moves the
    clock to its wake-up time (trio's ``MockClock`` with autojump), so concurrent
    sleepers wake in order.

    Quiet means: for a few turns of the event loop running the sleeper, no
    socket of that loop had an event waiting to be handled, no
    :class:`~meshlite.testing.FakeBackend` was busy with a request (so a request
    to one, on any thread, holds the clock; one it holds with ``hang=True`` does
    not), the clock did not move and the earliest sleeper stayed the same; and,
    with ``autojump_threshold`` above 0, all of that for at least
    ``autojump_threshold`` real seconds.

    Args:
        start: ``monotonic()`` at first (a finite number).
        autojump_threshold: Real seconds the loop must stay quiet before the
            earliest sleeper moves the clock. ``0.0`` (the default) jumps as soon
            as the loop settles, which keeps tests of backoff and timeouts
            instant. Raise it when the test waits on I/O the clock cannot see
            (another server on another thread or process: uvicorn, Redis): a
            request quicker than the threshold is never cut by a jump.
            ``math.inf`` never jumps: only :meth:`advance` and :meth:`sleep`
            move the clock.

    Raises:
        ConfigError: ``start`` is not a finite number, or ``autojump_threshold``
            is not a number >= 0.

    Example::

        clock = FakeClock()
        breaker = ml.CircuitBreaker(open_seconds=30.0, clock=clock)
        clock.advance(30.0)   # the open period is over, without waiting
    """

    def __init__(self, start: float = 0.0, *,
                 autojump_threshold: float = DEFAULT_AUTOJUMP_THRESHOLD) -> None:
        if (isinstance(start, bool) or not isinstance(start, int | float)
                or not math.isfinite(start)):
            fail("FakeClock", "start", start, "a finite number")
        if (isinstance(autojump_threshold, bool)
                or not isinstance(autojump_threshold, int | float)
                or not autojump_threshold >= 0):
            fail("FakeClock", "autojump_threshold", autojump_threshold,
                 "a number of real seconds >= 0 (0.0: jump as soon as the loop is "
                 "quiet; math.inf: never jump)")
        self._now = float(start)
        self._threshold = float(autojump_threshold)
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, int]] = []
        self._seq = itertools.count()
        self._changes = 0  # bumped whenever the clock moves or a sleeper comes or goes
        self.sleeps: list[float] = []
        """Every duration slept on this clock, in order (handy for asserting backoff)."""

    @property
    def autojump_threshold(self) -> float:
        """Real seconds of quiet before the earliest sleeper moves the clock."""
        return self._threshold

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
            self._changes += 1

    def _move_to(self, instant: float) -> None:
        with self._lock:
            if instant > self._now:
                self._now = instant
                self._changes += 1

    def sleep(self, seconds: float) -> None:
        """Return at once, with the clock moved to ``seconds`` after the call began."""
        self.sleeps.append(seconds)
        self._move_to(self._now + max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        """Yield to other tasks until the clock reaches this sleeper's wake-up time.

        When this sleeper is the earliest and the event loop is quiet (see the
        class), it moves the clock to its wake-up time itself.
        """
        self.sleeps.append(seconds)
        loop = asyncio.get_running_loop()
        threshold = self._threshold
        patient = threshold > 0.0
        with self._lock:
            entry = (self._now + max(0.0, seconds), next(self._seq))
            heapq.heappush(self._sleepers, entry)
            self._changes += 1
        now, changes, since = self._now, self._changes, time.monotonic()
        turns, ripe, pause, settle = 0, not patient, 0.0, _SETTLE_TURNS
        try:
            # One frame, no calls on the way for a sleeper that is not the earliest: a
            # thousand of them each take every turn of the loop.
            while True:
                await asyncio.sleep(pause)
                if self._now >= entry[0]:
                    return
                if self._sleepers[0] != entry:  # another sleeper wakes first and jumps
                    turns, pause = 0, (_POLL if patient else 0.0)
                    continue
                # Anything happening starts the quiet over: the clock moved, a socket has
                # an event to handle (a real request on its way), a server of the kit is
                # busy answering, or (patient) a sleeper came or went.
                if not turns:  # a new streak: the clock moving before it is no news
                    now = self._now
                busy = servers_busy()
                io = busy or io_pending(loop)
                if io or self._now != now or (patient and self._changes != changes):
                    now, changes, since = self._now, self._changes, time.monotonic()
                    # Waiting on a server's thread: let the loop block a moment (the
                    # answer wakes it at once) rather than spin and starve that thread.
                    turns, ripe, pause = 0, not patient, (_YIELD if busy else 0.0)
                    if io:
                        settle = _SETTLE_AFTER_IO
                    continue
                turns, pause = turns + 1, 0.0
                if turns < settle:
                    continue
                if ripe:
                    self._move_to(entry[0])
                    return
                left = threshold - (time.monotonic() - since)
                if left > 0.0:
                    pause = min(_POLL, left)
                else:
                    # Quiet long enough; settle once more at full speed (what a real
                    # pause woke at the same moment runs first), then jump.
                    turns, ripe, pause = 0, True, 0.0
        finally:
            with self._lock:
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)
                self._changes += 1

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
