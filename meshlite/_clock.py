"""Time, injected: every policy reads time through a :class:`Clock`.

Policies call ``clock.monotonic()`` (never wall time) and sleep through the clock,
so tests run them on :class:`meshlite.testing.FakeClock` without real sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "acquire_within"]


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
    sleep = staticmethod(time.sleep)

    async def asleep(self, seconds: float) -> None:
        # Imported here, not at the top: an event loop that awaits this has loaded
        # asyncio already, and `import meshlite` stays without it (start-up).
        import asyncio

        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


def acquire_within(lock: threading.Lock, seconds: float | None) -> bool:
    """``lock.acquire`` for at most ``seconds`` (``None``: no limit), in real time.

    ``Lock.acquire`` refuses a timeout above ``threading.TIMEOUT_MAX`` (about 292
    years) with ``OverflowError``; a longer one, which a long deadline or
    ``queue_timeout`` may give, waits without a limit instead.
    """
    if seconds is None or seconds > threading.TIMEOUT_MAX:
        return lock.acquire()
    return lock.acquire(timeout=seconds)
