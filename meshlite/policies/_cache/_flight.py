"""Single flight: one call computes a missing key while the callers asking for the
same key meanwhile wait for its outcome.

A :class:`Flight` is one computation in progress and its waiters; the
:class:`SingleFlight` mixin of ``CacheStore`` leads or follows flights under the
store's lock and stores what lands. A sync flight's followers wait on held
``threading.Lock`` objects (bounded by the call's deadline), an async flight's on
futures of the leader's event loop; a leader that leaves without an outcome
(cancelled) hands the lead to a follower.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from ..._clock import acquire_within
from ..._context import CallContext
from ..._errors import TimeoutExceeded
from ..._policy import AsyncHandler, Handler
from ._options import Entry, Key

__all__ = ["NOTHING", "Flight", "SingleFlight"]

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


class SingleFlight:
    """Leading and following the flights of one cache store (mixed into
    ``CacheStore``, whose lock, entries and flight tables these use)."""

    __slots__ = ()

    lock: threading.Lock
    flights: dict[Key, Flight]
    aflights: dict[Key, Flight]

    if TYPE_CHECKING:
        def peek(self, key: Key) -> Entry | None: ...
        def put(self, key: Key, value: Any, service: str | None) -> None: ...

    def enter(
        self, key: Key, force: bool, loop: asyncio.AbstractEventLoop | None
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

    def start_refresh(self, key: Key, loop: asyncio.AbstractEventLoop | None) -> Flight | None:
        """A flight to refresh ``key``, or ``None`` when a call for it is already running."""
        with self.lock:
            table = self.flights if loop is None else self.aflights
            if key in table:
                return None
            flight = table[key] = Flight(loop)
            return flight

    def land(
        self,
        key: Key,
        flight: Flight,
        value: Any = NOTHING,
        error: BaseException | None = None,
        service: str | None = None,
    ) -> None:
        """End ``flight``: store ``value``, or hand ``error`` (or, with neither, the
        lead) to the followers, and wake them. Idempotent."""
        with self.lock:
            if flight.landed:
                return
            flight.landed = True
            table = self.flights if flight.loop is None else self.aflights
            if table.get(key) is flight:
                del table[key]
            if value is not NOTHING:
                flight.value = value
                if not flight.invalidated:
                    self.put(key, value, service)
            elif error is not None:
                flight.error = error
            else:
                flight.retry = True
        flight.wake()

    def lead(self, call_next: Handler, ctx: CallContext, key: Key, flight: Flight) -> Any:
        try:
            value = call_next(ctx)
        except Exception as error:
            self.land(key, flight, error=error)
            raise
        except BaseException:
            self.land(key, flight)  # a follower takes over
            raise
        self.land(key, flight, value, service=ctx.service)
        return value

    async def alead(
        self, call_next: AsyncHandler, ctx: CallContext, key: Key, flight: Flight
    ) -> Any:
        try:
            value = await call_next(ctx)
        except Exception as error:
            self.land(key, flight, error=error)
            raise
        except BaseException:
            self.land(key, flight)  # cancelled: a follower takes over
            raise
        self.land(key, flight, value, service=ctx.service)
        return value

    def miss(self, call_next: Handler, ctx: CallContext, key: Key, force: bool = False) -> Any:
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
        self, call_next: AsyncHandler, ctx: CallContext, key: Key, force: bool = False
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
