"""One value per event loop (a connection pool, an aiohttp session), made on first use.

A pool's connections and locks belong to the event loop that opened them: a request
from another loop must not reuse them (from a loop started after the first one
closed, every request failed with ``RuntimeError: Event loop is closed``). Both
async wires keep one per loop in a :class:`PerLoop`: httpcore's transports
(:mod:`meshlite._http._loop_transport`) and aiohttp's sessions
(:mod:`meshlite._http._aio_wire`).

The rules, the same for both (they had drifted apart in two copies):

- The last loop's value is kept apart, as one ``(loop, value)`` tuple: a request
  reads :attr:`PerLoop.last` once and compares its loop by identity, and takes no
  lock (the tuple is replaced whole, so a reader never pairs one loop with another
  loop's value, as two attributes written one after the other could).
- A miss takes a lock. Sync programs run ``asyncio.run`` per job in threads of their
  own, so two loops can miss at once: without the lock both ended the same entries
  of closed loops (twice, or failed with ``KeyError``), and an entry made while the
  mesh closed could land in a table already taken for closing, never to be closed.
- An entry of a loop that has closed is ended (``end_dead``: its sockets closed at
  once, as its loop's callbacks never run again) when another loop comes, or at
  :meth:`PerLoop.aclose`.
- :meth:`PerLoop.aclose`, on some loop: that loop's entry is closed and awaited
  (``close``); the entry of another loop that has not closed is closed by ``close``
  on its own loop, not awaited (a loop stopped for now does it when it runs again:
  its connections' callbacks can only run there); one of a closed loop is ended.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from .._fork import fork_safe

__all__ = ["PerLoop", "close_elsewhere"]

T = TypeVar("T")

_log = logging.getLogger("meshlite.http")

_NONE: tuple[Any, Any] = (None, None)
"""``last`` before any loop: no running loop is None, so the fast path misses."""


class PerLoop(Generic[T]):
    """One value per event loop, made by ``make`` on the loop's first :meth:`get`.

    Args:
        make: Makes the value of a loop (called on that loop, under the lock).
        close: Closes a value, awaited on its own loop.
        end_dead: Ends a value at once, from outside its loop, which has closed.

    The hot path reads :attr:`last` once:
    ``last = per.last; value = last[1] if last[0] is loop else per.get(loop)``.
    """

    __slots__ = ("__weakref__", "_by_loop", "_close", "_end_dead", "_lock", "_make", "last")

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], T],
                 close: Callable[[T], Awaitable[object]],
                 end_dead: Callable[[T], object]) -> None:
        self._make = make
        self._close = close
        self._end_dead = end_dead
        self._lock = fork_safe(threading.Lock())
        self._by_loop: dict[asyncio.AbstractEventLoop, T] = {}
        self.last: tuple[asyncio.AbstractEventLoop, T] = _NONE
        """The loop used last and its value (written whole, read without a lock)."""
        _LIVE.add(self)

    def get(self, loop: asyncio.AbstractEventLoop) -> T:
        """The value of ``loop`` (made now on its first use; entries of loops that
        have closed are ended then)."""
        last = self.last
        if last[0] is loop:
            return last[1]
        dead: list[T] = []
        with self._lock:
            if loop in self._by_loop:
                value = self._by_loop[loop]
            else:
                for gone in [old for old in self._by_loop if old.is_closed()]:
                    dead.append(self._by_loop.pop(gone))
                value = self._by_loop[loop] = self._make(loop)
            self.last = (loop, value)
        for entry in dead:
            self._end_dead(entry)
        return value

    def end_closed_loops(self) -> None:
        """End the entries of loops that have closed (their sockets closed now)."""
        with self._lock:
            dead = [loop for loop in self._by_loop if loop.is_closed()]
            values = [self._by_loop.pop(loop) for loop in dead]
            if self.last[0] in dead:
                self.last = _NONE
        for value in values:
            self._end_dead(value)

    def items(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """Every loop's value, as they are now."""
        with self._lock:
            return list(self._by_loop.items())

    async def aclose(self) -> None:
        """Close every value: the running loop's awaited, other loops' on their own
        loop without waiting, those of loops that have closed at once. A loop that
        uses this holder afterwards gets a new value."""
        with self._lock:
            taken, self._by_loop, self.last = self._by_loop, {}, _NONE
        here = asyncio.get_running_loop()
        for loop, value in taken.items():
            if loop is not here:
                close_elsewhere(loop, value, self._close, self._end_dead)
        if here in taken:
            await self._close(taken[here])


_LIVE: weakref.WeakSet[PerLoop[Any]] = weakref.WeakSet()
"""Every holder alive, for :func:`_at_exit`."""


@atexit.register
def _at_exit() -> None:
    # A mesh never opened (or never closed) keeps the connections its clients opened
    # on loops that have ended: closed here, not left for aiohttp to warn of
    # ("Unclosed connector") as the interpreter tears the pools down.
    for per in list(_LIVE):
        try:
            per.end_closed_loops()
        except Exception:
            _log.debug("ending connections of ended event loops failed", exc_info=True)


_CLOSING: set[asyncio.Task[None]] = set()
"""Closes running on other loops (a loop holds its tasks weakly: kept until done)."""


def close_elsewhere(loop: asyncio.AbstractEventLoop, value: T,
                    close: Callable[[T], Awaitable[object]],
                    end_dead: Callable[[T], object]) -> None:
    """Close ``value``, which belongs to ``loop``, from another thread or loop: by
    ``close`` on ``loop`` itself, not awaited (its connections' callbacks, and the
    readers waiting on them, can only run there), or by ``end_dead`` at once when
    ``loop`` has closed."""
    if not loop.is_closed():
        try:
            loop.call_soon_threadsafe(_start_closing, value, close)
            return
        except RuntimeError:  # it closed meanwhile
            pass
    end_dead(value)


def _start_closing(value: T, close: Callable[[T], Awaitable[object]]) -> None:
    task = asyncio.get_running_loop().create_task(_closed(value, close))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def _closed(value: T, close: Callable[[T], Awaitable[object]]) -> None:
    try:
        await close(value)
    except Exception:  # nobody awaits this task: say it, do not lose it
        _log.debug("closing connections of another event loop failed", exc_info=True)
