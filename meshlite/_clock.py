"""Time, injected: every policy reads time through a :class:`Clock`.

Policies call ``clock.monotonic()`` (never wall time) and sleep through the clock,
so tests run them on :class:`meshlite.testing.FakeClock` without real sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["MAX_WAIT", "SYSTEM_CLOCK", "Clock", "SystemClock", "acquire_within", "bounded",
           "sleep", "wait_event"]

MAX_WAIT = threading.TIMEOUT_MAX
"""The longest wait the platform takes in one call (about 292 years): ``time.sleep``,
lock and event timeouts and socket timeouts refuse more with ``OverflowError``."""


@runtime_checkable
class Clock(Protocol):
    """What a policy needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the current thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the current task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.sleep`, :func:`asyncio.sleep`."""

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def sleep(seconds: float) -> None:
        """:func:`meshlite._clock.sleep`: ``time.sleep``, for any duration."""
        sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        # Imported here, not at the top: an event loop that awaits this has loaded
        # asyncio already, and `import meshlite` stays without it (start-up).
        import asyncio

        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
"""The real clock, shared: what every ``clock=None`` option means."""


def sleep(seconds: float) -> None:
    """``time.sleep(seconds)`` for any duration: one longer than :data:`MAX_WAIT` (a
    backoff or a rate limit's slot centuries away) is slept in several waits, as
    ``time.sleep`` alone would raise ``OverflowError``."""
    while seconds > MAX_WAIT:
        time.sleep(MAX_WAIT)
        seconds -= MAX_WAIT
    time.sleep(seconds)


def bounded(seconds: float) -> float:
    """``seconds``, at most :data:`MAX_WAIT`: a timeout a socket, lock or event takes
    (a longer one means the same: no limit within the process's lifetime)."""
    return seconds if seconds <= MAX_WAIT else MAX_WAIT


def wait_event(event: threading.Event, seconds: float) -> bool:
    """``event.wait(seconds)`` for any duration (see :func:`sleep`)."""
    while seconds > MAX_WAIT:
        if event.wait(MAX_WAIT):
            return True
        seconds -= MAX_WAIT
    return event.wait(seconds)


def acquire_within(lock: threading.Lock, seconds: float | None) -> bool:
    """``lock.acquire`` for at most ``seconds`` (``None``: no limit), in real time.

    ``Lock.acquire`` refuses a timeout above ``threading.TIMEOUT_MAX`` (about 292
    years) with ``OverflowError``; a longer one, which a long deadline or
    ``queue_timeout`` may give, waits without a limit instead.
    """
    if seconds is None or seconds > MAX_WAIT:
        return lock.acquire()
    return lock.acquire(timeout=seconds)
