"""The in-process cache store: a TTLCache, the calls in flight, the functions seen.

Speed: a hit reads the ``TTLCache``'s own dict directly (one C lookup), compares
the entry's ``fresh_until`` itself and moves the key to the LRU end, the very work
of ``TTLCache.__getitem__`` without its three Python frames and three hashings of
the key (the cache-hit benchmark against ``cachetools.cached`` hinges on it). The two
dicts are private to cachetools, so :meth:`CacheStore.reader` checks they are there
and otherwise falls back to ``__getitem__``.

Concurrency: reads take no lock, every write holds ``lock``. A read is one atomic
dict lookup plus one atomic ``move_to_end`` (which raises ``KeyError`` when a writer
just removed the key: the read keeps the value it already has). Writes are
serialised, so the expiry list and the cachetools timer are only touched by one
thread. The one interaction left is eviction (``popitem``), which iterates the
``OrderedDict`` and raises ``RuntimeError`` if a lock-free read reordered it in
between; eviction changes nothing before that point, so writers simply try again.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import suppress
from typing import Any, TypeAlias

from cachetools import TTLCache

from ..._clock import Clock, acquire_within
from ..._context import CallContext
from ..._errors import TimeoutExceeded
from ..._fork import after_fork_in_child
from ..._policy import AsyncHandler, Handler

__all__ = ["NOTHING", "CacheStore", "Entry", "Flight", "Key"]

Key: TypeAlias = tuple[Any, Hashable]
"""A cache key: ``(function, key of the arguments)``."""

Entry: TypeAlias = tuple[Any, float]
"""A cache entry: ``(value, fresh_until)`` on the Cache's clock."""

NOTHING: Any = object()

# The function index (for invalidate) is pruned to the functions that still have
# entries when it grows past this, then past twice its pruned size: amortised O(1)
# even when every call brings a new function object.
_FUNCTIONS_MIN = 64
_WRITE_ATTEMPTS = 8


def _touch_nothing(key: Key) -> None:
    """``TTLCache.__getitem__`` already marked the key used."""


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


class CacheStore:
    """Entries, in-flight calls and the functions seen, for one :class:`Cache`."""

    __slots__ = ("__weakref__", "_limit", "_now", "_pinned", "_ttl", "aflights", "data",
                 "flights", "functions", "lock")

    def __init__(self, maxsize: int, ttl: float, stale_ttl: float, clock: Clock) -> None:
        # Entries are (value, fresh_until); cachetools drops them stale_ttl later.
        self.data: TTLCache[Key, Entry] = TTLCache(
            maxsize, ttl + stale_ttl, timer=clock.monotonic
        )
        self.lock = threading.Lock()
        self.flights: dict[Key, Flight] = {}
        self.aflights: dict[Key, Flight] = {}
        self.functions: dict[Any, str | None] = {}  # function -> service, for warm()
        self._pinned: set[Any] = set()
        self._limit = _FUNCTIONS_MIN
        self._ttl = ttl
        self._now = clock.monotonic
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: the parent's flights never land there (their threads
        are the parent's); the entries stay."""
        self.lock = threading.Lock()
        self.flights, self.aflights = {}, {}

    # -- entries (callers of the writers hold the lock) ---------------------------

    def reader(self) -> tuple[Callable[[Key], Entry | None], Callable[[Key], None]]:
        """``(get, touch)`` for the lock-free hit path: ``get(key)`` returns the entry
        or ``None`` without checking its age; ``touch(key)`` marks it recently used and
        raises ``KeyError`` if it is gone."""
        raw = getattr(self.data, "_Cache__data", None)
        links = getattr(self.data, "_TTLCache__links", None)
        if type(raw) is dict and type(links) is OrderedDict:
            return raw.get, links.move_to_end
        return self.peek, _touch_nothing

    def peek(self, key: Key) -> Entry | None:
        try:
            return self.data[key]
        except KeyError:
            return None

    def put(self, key: Key, value: Any, service: str | None) -> None:
        entry = (value, self._now() + self._ttl)
        for _ in range(_WRITE_ATTEMPTS):
            try:
                self.data[key] = entry
                break
            except RuntimeError:  # eviction raced a lock-free read; see the module doc
                continue
        fn = key[0]
        if fn not in self.functions:
            self.functions[fn] = service
            if len(self.functions) > self._limit:
                live = {k[0] for k in list(self.data.keys())}
                self.functions = {
                    f: s for f, s in self.functions.items() if f in live or f in self._pinned
                }
                self._limit = max(_FUNCTIONS_MIN, 2 * len(self.functions))

    def pin(self, fn: Any) -> None:
        """Remember a function the Cache decorates, so warm() knows it before any call."""
        with self.lock:
            self._pinned.add(fn)
            self.functions.setdefault(fn, None)

    def invalidate(self, argkey: Hashable) -> int:
        removed = 0
        with self.lock:
            for fn in self.functions:
                key = (fn, argkey)
                for table in (self.flights, self.aflights):
                    flight = table.get(key)
                    if flight is not None:
                        flight.invalidated = True
                try:
                    self.data.pop(key)
                    removed += 1
                except KeyError:
                    pass
        return removed

    def clear(self) -> None:
        with self.lock:
            while True:
                try:
                    self.data.clear()
                    break
                except RuntimeError:  # each attempt evicts some; see the module doc
                    continue
            for flight in (*self.flights.values(), *self.aflights.values()):
                flight.invalidated = True
            self.functions = {f: s for f, s in self.functions.items() if f in self._pinned}

    def size(self) -> int:
        with self.lock:
            return len(self.data)

    # -- flights ------------------------------------------------------------------

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
