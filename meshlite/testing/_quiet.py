"""What FakeClock looks at before it jumps: socket events a loop has yet to handle,
and the kit's own servers answering a request.

asyncio has no public way to ask a loop "is a socket ready that you have not
handled yet?". Selector loops (the default on every platform but Windows) keep
their ``selectors`` object in the private ``_selector``; a zero-timeout
``select()`` on it answers without consuming anything (asyncio registers its
sockets level-triggered, so the loop still sees every event it would have seen).
Loops without one (uvloop, the Windows proactor) answer ``None``: unknown, and
FakeClock then goes by turns of the loop and real time alone. This module is the
only place that reads it.

A server of the kit (:class:`~meshlite.testing.FakeBackend`) registers a probe
with :func:`hold_while` while it serves: busy while it answers a request, and,
serving on its own thread, while its loop is not waiting idle for I/O
(:class:`WatchedSelector`), so a request on its way to, in or back from that thread
holds every FakeClock.
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections.abc import Callable
from typing import Any

__all__ = ["WatchedSelector", "hold_while", "io_pending", "serving_loop", "servers_busy", "watched"]

_PROBES: dict[int, Callable[[], bool]] = {}
_KEYS = itertools.count()


def io_pending(loop: asyncio.AbstractEventLoop) -> bool | None:
    """True when a socket of ``loop`` is ready and not handled yet; None: cannot tell.

    Call it from the loop's own thread, between callbacks (from a task).
    """
    selector = getattr(loop, "_selector", None)
    if not isinstance(selector, selectors.BaseSelector):
        return None
    try:
        return bool(selector.select(0))
    except (OSError, ValueError):  # a selector closed under us: the loop is going away
        return None


def hold_while(probe: Callable[[], bool]) -> Callable[[], None]:
    """Hold every FakeClock while ``probe()`` is true; returns the function that ends it.

    ``probe`` is called from any thread, often: it must be quick and never block.
    """
    key = next(_KEYS)
    _PROBES[key] = probe

    def release() -> None:
        _PROBES.pop(key, None)

    return release


def servers_busy() -> bool:
    """True while a server of the kit is busy with a request (its probe says so)."""
    return any(probe() for probe in tuple(_PROBES.values()))


class WatchedSelector(selectors.DefaultSelector):
    """The selector of a loop serving on its own thread, which other threads can ask
    whether that loop is idle (see :meth:`idle`)."""

    blocked = False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # asyncio selects with timeout 0 while it has callbacks ready to run: only a
        # wait that may block says the loop has nothing to do but wait.
        self.blocked = timeout is None or timeout > 0
        try:
            return super().select(timeout)
        finally:
            self.blocked = False

    def idle(self) -> bool:
        """True when the loop waits for I/O, nothing to run, no event waiting; any thread."""
        if not self.blocked:
            return False
        try:
            return not super().select(0)
        except (OSError, ValueError):  # closed: the loop is gone, and holds nothing
            return True


def serving_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for a server on its own thread, on a :class:`WatchedSelector`."""
    return asyncio.SelectorEventLoop(WatchedSelector())


def watched(loop: Any) -> WatchedSelector | None:
    """``loop``'s selector when it was made by :func:`serving_loop`, else None."""
    selector = getattr(loop, "_selector", None)
    return selector if isinstance(selector, WatchedSelector) else None
