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
- An entry is closed on its own loop as that loop ends (``close``, awaited in the
  loop's ``shutdown_asyncgens``, which ``asyncio.run``, ``asyncio.Runner`` and
  ``uvloop.run`` await before closing it): while its connections' callbacks still
  run, on the loop's own thread. An async generator started on the loop with the
  entry (:class:`_AtShutdown`) is registered with the loop as any is, and the loop
  closes it there. uvloop needs this: its transports may be touched only from their
  loop's thread, and its ``close()`` closes the handles left open itself (each with
  a ``ResourceWarning``; where warnings are errors, one left open hung ``close()``,
  or failed it with ``OSError(EBUSY)``).
- An entry of a loop that closed without that (``loop.close()`` alone) is ended
  (``end_dead``: its sockets closed at once, as its loop's callbacks never run
  again) when another loop comes, or at :meth:`PerLoop.aclose`.
- :meth:`PerLoop.aclose`, on some loop: that loop's entry is closed and awaited
  (``close``); the entry of another loop that has not closed is closed by ``close``
  on its own loop, not awaited (a loop stopped for now does it when it runs again:
  its connections' callbacks can only run there), and that loop's end waits for
  that close (or closes the entry itself, when it comes before the close or
  cancelled it); one of a closed loop is ended.
- A value held elsewhere, not in a holder (a ``mesh.aiohttp()`` session, which its
  mesh holds), is closed at its loop's end the same way: :func:`close_at_loop_end`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import sys
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from .._fork import fork_safe

__all__ = ["LoopEnd", "PerLoop", "close_at_loop_end", "close_elsewhere"]

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

    __slots__ = ("__weakref__", "_by_loop", "_close", "_end_dead", "_ends", "_lock",
                 "_make", "last")

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], T],
                 close: Callable[[T], Awaitable[object]],
                 end_dead: Callable[[T], object]) -> None:
        self._make = make
        self._close = close
        self._end_dead = end_dead
        self._lock = fork_safe(threading.Lock())
        self._by_loop: dict[asyncio.AbstractEventLoop, T] = {}
        self._ends: dict[asyncio.AbstractEventLoop, _AtShutdown] = {}
        """Each entry's part in its loop's end (for loops that have one)."""
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
                    self._ends.pop(gone, None)  # its loop is closed: it never runs
                value = self._by_loop[loop] = self._make(loop)
                end = _AtShutdown.start(self, loop, value)
                if end is not None:
                    self._ends[loop] = end
            self.last = (loop, value)
        for entry in dead:
            self._end_dead(entry)
        return value

    def end_closed_loops(self) -> None:
        """End the entries of loops that have closed (their sockets closed now)."""
        with self._lock:
            dead = [loop for loop in self._by_loop if loop.is_closed()]
            values = [self._by_loop.pop(loop) for loop in dead]
            for loop in dead:
                self._ends.pop(loop, None)
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
            ends, self._ends = self._ends, {}
        here = asyncio.get_running_loop()
        for loop, value in taken.items():
            if loop is not here:
                close_elsewhere(loop, value, self._close, self._end_dead, ends.get(loop))
        if here in taken:
            end = ends.get(here)
            if end is not None:
                end.finish()
            await self._close(taken[here])

    async def _at_loop_end(self, loop: asyncio.AbstractEventLoop, value: T) -> None:
        """Close ``value`` on ``loop``, which is ending, if it is still that loop's."""
        with self._lock:
            if self._by_loop.get(loop) is not value:
                return  # closed already (the holder's aclose), or made again since
            del self._by_loop[loop]
            self._ends.pop(loop, None)
            if self.last[0] is loop:
                self.last = _NONE
        await _closed(value, self._close)


class _AtShutdown:
    """One entry's part in its loop's end: an async generator started on the loop,
    which the loop's async generator hooks register as any other; the loop closes it
    in ``shutdown_asyncgens``, and its ``finally`` closes the entry there (awaited).

    When the entry is closed otherwise first, :meth:`finish` ends the generator on
    the loop's own thread, finding nothing to do (a loop that closes it later does
    nothing either; one dropped unfinished would be closed by its loop anyway, from
    the thread that dropped it, which may race the loop's close)."""

    __slots__ = ("_closing", "_gen")

    def __init__(self, gen: AsyncGenerator[None, None],
                 closing: list[asyncio.Task[None] | None]) -> None:
        self._gen = gen
        self._closing = closing

    @staticmethod
    def start(per: PerLoop[T], loop: asyncio.AbstractEventLoop, value: T
              ) -> _AtShutdown | None:
        """The end of ``value``, the entry of ``loop`` (the running loop of this
        thread); None when the loop cannot say it ends (hooks of another's, or its
        shutdown done: such an entry is ended once its loop has closed)."""
        return _AtShutdown.begin(loop, functools.partial(
            _entry_end, weakref.ref(per), loop, value))  # (the holder weakly: it holds this)

    @staticmethod
    def begin(loop: asyncio.AbstractEventLoop, ending: _Ending) -> _AtShutdown | None:
        """Run ``ending`` on ``loop`` (the running loop of this thread) as it ends: it
        answers what to await then (or None: nothing), given False, or True when a
        close handed to the loop (:meth:`handed`) has not run, or was cancelled; None
        when the loop cannot say it ends (as :meth:`start`)."""
        firstiter = sys.get_asyncgen_hooks().firstiter
        if (getattr(firstiter, "__self__", None) is not loop
                or getattr(loop, "_asyncgens_shutdown_called", False)):
            return None
        closing: list[asyncio.Task[None] | None] = []
        gen = _until_loop_ends(ending, closing)
        with contextlib.suppress(StopIteration):  # at its yield: registered, waiting
            gen.asend(None).send(None)
        return _AtShutdown(gen, closing)

    def handed(self) -> None:
        """The entry, taken out of its holder, is to be closed on its loop by a task
        that is not made yet: if the loop ends first, its end closes the entry."""
        self._closing.append(None)

    def hand_over(self, task: asyncio.Task[None]) -> None:
        """``task`` (on this entry's loop) closes the entry: the loop's end waits
        for it, and closes the entry again if it was cancelled (``asyncio.run``
        cancels the tasks left when its coroutine returns, before that end); once
        it has closed the entry, the generator ends."""
        self._closing.append(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            self.finish()

    def finish(self) -> None:
        """End the generator, its entry closed otherwise (on the loop's thread)."""
        with contextlib.suppress(StopIteration, RuntimeError):  # (or running: ending)
            self._gen.aclose().send(None)


_Ending = Callable[[], Callable[[bool], Awaitable[None]] | None]
"""What a value's end does, made as its loop's end begins (None: nothing), then given
whether a close handed to the loop is left to it."""


async def _until_loop_ends(ending: _Ending, closing: list[asyncio.Task[None] | None]
                           ) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        end = ending()
        if closing:  # a close from elsewhere handed to this loop
            task = closing[-1]
            if task is not None and not task.done():
                await asyncio.wait([task])
            # Its task not started yet (the loop may close before it runs; if it
            # does run, closing again does nothing), or cancelled: closed here.
            if (task is None or task.cancelled()) and end is not None:
                await end(True)
        elif end is not None:
            await end(False)


def _entry_end(per: weakref.ref[PerLoop[T]], loop: asyncio.AbstractEventLoop, value: T
               ) -> Callable[[bool], Awaitable[None]] | None:
    # A holder's entry at its loop's end (nothing once the holder is gone): closed as
    # it is when a close was handed to the loop (the entry is out of the holder),
    # else if still the loop's.
    holder = per()
    if holder is None:
        return None

    async def end(handed: bool) -> None:
        if handed:
            await _closed(value, holder._close)
        else:
            await holder._at_loop_end(loop, value)

    return end


def close_at_loop_end(loop: asyncio.AbstractEventLoop, value: T,
                      close: Callable[[T], Awaitable[object]]) -> _AtShutdown | None:
    """Close ``value``, of ``loop`` (the running loop of this thread), by ``close`` on
    ``loop`` as it ends, as a holder's entry is (for one value held elsewhere: a
    ``mesh.aiohttp()`` session). ``close`` must do nothing (and return at once)
    when ``value`` was closed otherwise first.

    Returns the value's part in its loop's end (None when the loop cannot say it
    ends), which its owner keeps as long as ``value`` (the loop holds it weakly),
    passes to :func:`close_elsewhere`, or ends by :meth:`~_AtShutdown.finish` once it
    closed ``value`` on ``loop`` itself."""
    async def end(handed: bool) -> None:
        await _closed(value, close)

    return _AtShutdown.begin(loop, lambda: end)


LoopEnd = _AtShutdown
"""A value's part in its loop's end (:func:`close_at_loop_end`)."""


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
                    end_dead: Callable[[T], object], end: _AtShutdown | None = None
                    ) -> None:
    """Close ``value``, which belongs to ``loop``, from another thread or loop: by
    ``close`` on ``loop`` itself, not awaited (its connections' callbacks, and the
    readers waiting on them, can only run there), or by ``end_dead`` at once when
    ``loop`` has closed. ``end``, the value's part in its loop's end, goes along: the
    loop's end waits for the close."""
    if not loop.is_closed():
        if end is not None:
            end.handed()
        try:
            loop.call_soon_threadsafe(_start_closing, value, close, end)
            return
        except RuntimeError:  # it closed meanwhile
            pass
    end_dead(value)


def _start_closing(value: T, close: Callable[[T], Awaitable[object]],
                   end: _AtShutdown | None) -> None:
    task = asyncio.get_running_loop().create_task(_closed(value, close))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)
    if end is not None:
        end.hand_over(task)


async def _closed(value: T, close: Callable[[T], Awaitable[object]]) -> None:
    try:
        await close(value)
    except Exception:  # nobody awaits this (a task, a loop's end): say it, do not lose it
        _log.debug("closing an event loop's connections failed", exc_info=True)
