"""Single flight: one call computes a missing key while the callers asking for the
same key meanwhile wait for its outcome. The one implementation of it: the in-memory
cache (``CacheStore`` is a :class:`Flights`) and the cache on a shared store (a
:class:`Flights` of its own per Cache) lead, follow and land flights here.

A :class:`Flight` is one computation in progress and its waiters. How it lands:

- **A value**: stored (by the in-memory store under its lock, before anyone wakes;
  the shared cache stores it itself before landing), handed to every waiter, and the
  flight leaves the table. A value whose key was invalidated (``invalidate()`` or
  ``clear()``) while it was computed is handed to the waiters but not stored, for the
  shared cache too (within this process; another process's call is its own).
- **An error** (an ``Exception``): raised again in every waiter, the same object;
  never stored, so the next call tries again.
- **Neither**: the leader left without an outcome (a task cancelled, a thread
  interrupted by a ``BaseException``, a refresh that found another process already
  refreshing). Nothing is stored and the waiters wake to look again: one of them
  leads a new flight. Every path that registers a flight lands it whatever happens
  after, so a waiter never waits for a flight no one will land (a waiting thread is
  also bounded by its call's deadline).

Threads and tasks keep separate tables (``flights``, ``aflights``): a thread waits on
a held ``threading.Lock``, a task on a future of its own event loop, and neither waits
for the other kind's flight (a sync call made on an event loop's thread would block
the loop that has to finish the flight). A task of another event loop than the
flight's leads a flight of its own that no one joins (it cannot await that loop's
futures). Both tables are dropped in a forked child: their leaders' threads are the
parent's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Iterable
from contextlib import suppress
from typing import Any

from ..._clock import acquire_within
from ..._context import CallContext
from ..._errors import TimeoutExceeded
from ..._fork import after_fork_in_child
from ..._policy import AsyncHandler, Handler
from ._options import Entry

__all__ = ["NOTHING", "Flight", "Flights"]

NOTHING: Any = object()
"""No value: what a flight that ended in an error (or in none) lands with."""


class Flight:
    """One computation of a key in progress, and the callers waiting for its outcome.

    ``loop`` is ``None`` for a sync flight (waiters are held ``threading.Lock``
    objects) and the leader's event loop for an async one (waiters are futures).
    """

    __slots__ = ("error", "invalidated", "landed", "loop", "retry", "value", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.waiters: list[Any] = []
        self.value: Any = None
        self.error: BaseException | None = None
        self.retry = False  # the leader left without an outcome: a follower takes over
        self.invalidated = False  # invalidate()/clear() ran meanwhile: do not store
        self.landed = False

    def outcome(self) -> Any:
        """The leader's result, or its error raised again."""
        if self.error is not None:
            raise self.error
        return self.value

    def wake(self) -> None:
        if self.loop is None:
            for lock in self.waiters:
                lock.release()
            return
        for future in self.waiters:
            if not future.done():
                # The loop may be closing under a leader being torn down.
                with suppress(RuntimeError):
                    future.set_result(None)


class Flights:
    """The calls in flight of one cache, by key: ``flights`` (threads) and
    ``aflights`` (tasks), under ``lock``.

    :meth:`peek` and :meth:`put` are what a flight looks at and stores into under the
    lock; here they find and keep nothing (the shared cache reads and stores in its
    store itself), ``CacheStore`` gives them its entries.
    """

    __slots__ = ("__weakref__", "aflights", "flights", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flights: dict[Any, Flight] = {}
        self.aflights: dict[Any, Flight] = {}
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: the parent's flights are led by threads the child does
        not have, so none of them would ever land; the child's callers lead their own."""
        self.lock = threading.Lock()
        self.flights, self.aflights = {}, {}

    def peek(self, key: Any) -> Entry | None:
        """The entry of ``key`` (the lock is held): none here."""
        return None

    def put(self, key: Any, value: Any, service: str | None) -> None:
        """Store what a flight landed (the lock is held): nothing here."""

    # -- invalidation (callers hold the lock) ------------------------------------------

    def keep_out(self, argkey: Hashable, functions: Iterable[Any] | None = None) -> None:
        """Mark the flights of ``(function, argkey)``, for each of ``functions`` (every
        function in flight with ``None``), so that what they land is not stored."""
        tables = (self.flights, self.aflights)
        if functions is None:
            functions = {key[0] for table in tables for key in table}
        for fn in functions:
            key = (fn, argkey)
            for table in tables:
                flight = table.get(key)
                if flight is not None:
                    flight.invalidated = True

    def keep_out_all(self) -> None:
        """Mark every flight: what they land is not stored."""
        for flight in (*self.flights.values(), *self.aflights.values()):
            flight.invalidated = True

    def kept_out(self, key: Any, loop: asyncio.AbstractEventLoop | None) -> bool:
        """Whether the flight of ``key`` this caller leads was marked by
        :meth:`keep_out` (for a store written outside the lock)."""
        flight = (self.flights if loop is None else self.aflights).get(key)
        return flight is not None and flight.invalidated and flight.loop is loop

    # -- leading, following, landing ----------------------------------------------------

    def enter(
        self, key: Any, force: bool, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[Flight | None, Any]:
        """Look again under the lock, then lead or follow the call in flight.

        Returns ``(None, entry)`` when an entry is there now, ``(flight, None)`` to
        lead and ``(flight, waiter)`` to follow. A caller from another event loop
        than the flight's leads a flight of its own that no one else joins.
        """
        with self.lock:
            if not force:
                entry = self.peek(key)
                if entry is not None:
                    return None, entry
            table = self.flights if loop is None else self.aflights
            flight = table.get(key)
            if flight is None:
                flight = table[key] = Flight(loop)
                return flight, None
            if loop is None:
                waiter: Any = threading.Lock()
                waiter.acquire()
            elif flight.loop is loop:
                waiter = loop.create_future()
            else:
                return Flight(loop), None
            flight.waiters.append(waiter)
            return flight, waiter

    def start(self, key: Any, loop: asyncio.AbstractEventLoop | None) -> Flight | None:
        """A flight to refresh ``key``, or ``None`` when a call for it is already running."""
        with self.lock:
            table = self.flights if loop is None else self.aflights
            if key in table:
                return None
            flight = table[key] = Flight(loop)
            return flight

    def land(
        self,
        key: Any,
        flight: Flight,
        value: Any = NOTHING,
        error: BaseException | None = None,
        service: str | None = None,
        keep: bool = True,
    ) -> None:
        """End ``flight``: store ``value`` (unless not ``keep``: a result ``ml.Retry``
        refused) and hand it to the followers, or hand them ``error`` (or, with
        neither, the lead), and wake them. Idempotent."""
        with self.lock:
            if flight.landed:
                return
            flight.landed = True
            table = self.flights if flight.loop is None else self.aflights
            if table.get(key) is flight:
                del table[key]
            if value is not NOTHING:
                flight.value = value
                if keep and not flight.invalidated:
                    self.put(key, value, service)
            elif error is not None:
                # Kept for the followers only: none can join once the flight left its
                # table, and a leader's error kept with none would be a cycle (its
                # traceback holds the leader's frames, which hold the flight).
                if flight.waiters:
                    flight.error = error
            else:
                flight.retry = True
        flight.wake()

    def lead(self, call_next: Handler, ctx: CallContext, key: Any, flight: Flight) -> Any:
        """Make the call of ``flight`` and land it, whatever happens (a ``NOTHING``
        result lands as no outcome)."""
        try:
            value = call_next(ctx)
        except Exception as error:
            self._failed(key, flight, ctx, error)
            raise
        except BaseException:
            self.land(key, flight)  # a follower takes over
            raise
        self.land(key, flight, value, service=ctx.service, keep=not ctx.refused_result)
        return value

    def _failed(self, key: Any, flight: Flight, ctx: CallContext, error: Exception) -> None:
        """Land a leader's error; or, when the leader's own deadline has passed (its
        caller's, or a Timeout outside this Cache: its error is most likely that),
        hand the lead over, as for a cancelled leader: a follower has time of its own."""
        if ctx.deadline is not None and ctx.out_of_time() is not None:
            self.land(key, flight)
        else:
            self.land(key, flight, error=error)

    async def alead(
        self, call_next: AsyncHandler, ctx: CallContext, key: Any, flight: Flight
    ) -> Any:
        """The async twin of :meth:`lead`."""
        try:
            value = await call_next(ctx)
        except Exception as error:
            self._failed(key, flight, ctx, error)
            raise
        except BaseException:
            self.land(key, flight)  # cancelled: a follower takes over
            raise
        self.land(key, flight, value, service=ctx.service, keep=not ctx.refused_result)
        return value

    def miss(self, call_next: Handler, ctx: CallContext, key: Any, force: bool = False) -> Any:
        """Answer a sync miss: make the call, or wait for the one already running."""
        while True:
            flight, waiter = self.enter(key, force, None)
            if flight is None:
                return waiter[0]
            if waiter is None:
                return self.lead(call_next, ctx, key, flight)
            timeout = ctx.remaining()
            if not acquire_within(waiter, timeout):
                raise TimeoutExceeded(
                    f"Cache: the call of {ctx.operation!r} waited for the same call already "
                    "running until its deadline passed; give it more time or make the "
                    "called service faster",
                    service=ctx.service,
                    policy="cache",
                )
            if not flight.retry:
                return flight.outcome()

    async def amiss(
        self, call_next: AsyncHandler, ctx: CallContext, key: Any, force: bool = False
    ) -> Any:
        """Answer an async miss: make the call, or await the one already running."""
        loop = asyncio.get_running_loop()
        while True:
            flight, waiter = self.enter(key, force, loop)
            if flight is None:
                return waiter[0]
            if waiter is None:
                return await self.alead(call_next, ctx, key, flight)
            await waiter
            if not flight.retry:
                return flight.outcome()
