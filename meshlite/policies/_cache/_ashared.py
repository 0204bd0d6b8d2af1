"""The async paths of a Cache whose entries live in a shared store (see ``_shared``).

Callers of one key in one event loop await one flight; a stale entry is refreshed
by one background task while every caller gets the stale value at once.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from ... import _events
from ..._context import CallContext, _current
from ..._policy import AsyncHandler
from ...state._base import (
    LOCAL,
    SharedCache,
    StoreUnavailableError,
    agive_back,
    fall_back,
)
from ._flight import NOTHING, Flight
from ._shared import POLL_FIRST, POLL_MAX, Flights, SharedMiss, shared_keys, unencodable

if TYPE_CHECKING:
    from ._policy import Cache

__all__ = ["shared_async_handler"]


def shared_async_handler(cache: Cache, call_next: AsyncHandler,
                         local: AsyncHandler) -> tuple[AsyncHandler, SharedMiss]:
    """The async handler of ``cache`` on its store, and its miss path (for ``warm``)."""
    shared: SharedCache | None = cache._shared
    store = cache._shared_store
    assert shared is not None
    assert store is not None
    keys, hooks, clock = shared_keys(cache), cache.hooks, cache._clock
    single = shared.single_flight
    flights = Flights()

    async def put(ctx: CallContext, key: str, fn: str, value: Any) -> None:
        try:
            await shared.aput(key, fn, value)
        except StoreUnavailableError as error:
            fall_back(cache, store, ctx, error, step="store")
        except TypeError as error:
            unencodable(fn, error)

    async def contend(ctx: CallContext, key: str) -> tuple[Any, str | None]:
        left = ctx.remaining()
        budget = single if left is None or single is None else min(single, left)
        delay, waited = POLL_FIRST, 0.0
        try:
            while True:
                token = await shared.alock(key)
                found = await shared.aget(key)
                if found is not None:
                    if token is not None:
                        await shared.aunlock(key, token)
                    return found[0], None
                if token is not None or budget is None or waited >= budget:
                    return NOTHING, token
                await clock.asleep(delay)
                waited += delay
                delay = min(2 * delay, POLL_MAX)
        except StoreUnavailableError as error:
            fall_back(cache, store, ctx, error, step="lock")  # no single flight
            return NOTHING, None

    async def unlock(ctx: CallContext, key: str, token: str | None) -> None:
        if token is not None:
            await agive_back(cache, store, ctx, lambda: shared.aunlock(key, token))

    async def compute(ctx: CallContext, key: str, fn: str, force: bool) -> Any:
        token = None
        if single is not None and not force:
            found, token = await contend(ctx, key)
            if found is not NOTHING:
                return found
        elif not force:
            # Look again, as the in-memory cache does under its lock: a flight of this
            # process may have stored the entry since this caller's first look.
            try:
                again = await shared.aget(key)
            except StoreUnavailableError as error:
                fall_back(cache, store, ctx, error, step="read")
            else:
                if again is not None:
                    return again[0]
        try:
            value = await call_next(ctx)
            await put(ctx, key, fn, value)
            return value
        finally:
            await unlock(ctx, key, token)

    async def lead(ctx: CallContext, key: str, fn: str, flight: Flight, force: bool) -> Any:
        try:
            value = await compute(ctx, key, fn, force)
        except Exception as error:
            flights.land(key, flight, error=error)
            raise
        except BaseException:
            flights.land(key, flight)  # cancelled: a follower takes over
            raise
        flights.land(key, flight, value)
        return value

    async def miss(ctx: CallContext, key: str, fn: str, force: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            with flights.lock:
                flight = flights.table.get(key)
                waiter: Any = None
                if flight is None:
                    flight = flights.table[key] = Flight(loop)
                elif flight.loop is loop:
                    waiter = loop.create_future()
                    flight.waiters.append(waiter)
                else:  # another loop's flight: lead one of our own, unregistered
                    flight = Flight(loop)
            if waiter is None:
                return await lead(ctx, key, fn, flight, force)
            await waiter
            if not flight.retry:
                return flight.outcome()

    async def refresh(ctx: CallContext, key: str, fn: str, flight: Flight,
                      token: str | None) -> None:
        _current.set(ctx)  # the task runs in its own copy of the context
        try:
            fresh = await call_next(ctx)
        except Exception as error:
            flights.land(key, flight, error=error)
            cache._refresh_failed(ctx, error)
            return
        finally:
            await unlock(ctx, key, token)
        await put(ctx, key, fn, fresh)
        flights.land(key, flight, fresh)

    async def stale(ctx: CallContext, key: str, fn: str, value: Any) -> Any:
        loop = asyncio.get_running_loop()
        flight = flights.start(key, loop)
        token = None
        if flight is not None and single is not None:
            try:
                token = await shared.alock(key)
            except StoreUnavailableError as error:
                fall_back(cache, store, ctx, error, step="lock")
            else:
                if token is None:  # another process refreshes it
                    flights.land(key, flight)
                    flight = None
        if flight is not None:
            # The refresh outlives this call: a context of its own (no deadline, span).
            own = CallContext(ctx.fn, ctx.args, ctx.kwargs, ctx.operation, ctx.service)
            task = loop.create_task(refresh(own, key, fn, flight, token))
            cache._tasks.add(task)
            task.add_done_callback(functools.partial(_done, cache, flights, key, flight))
        cache._stale_served(ctx)
        return value

    async def handle(ctx: CallContext) -> Any:
        key, fn = keys(ctx)
        try:
            found = await shared.aget(key)
        except StoreUnavailableError as error:
            if fall_back(cache, store, ctx, error) == LOCAL:
                return await local(ctx)
            return await call_next(ctx)
        if found is None:
            cache._missed(ctx)
            return await miss(ctx, key, fn)
        value, is_stale = found
        if is_stale:
            return await stale(ctx, key, fn, value)
        cache.hits += 1
        if hooks._hooks or _events._global_hooks:
            cache._hit(ctx)
        return value

    async def warm(ctx: CallContext, _key: Any, force: bool) -> Any:
        key, fn = keys(ctx)
        return await miss(ctx, key, fn, force)

    return handle, warm


def _done(cache: Cache, flights: Flights, key: str, flight: Flight,
          task: asyncio.Task[None]) -> None:
    cache._tasks.discard(task)
    flights.land(key, flight)  # a task cancelled before it ran never landed its flight
