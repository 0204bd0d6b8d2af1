"""The async paths of a Cache whose entries live in a shared store (see ``_shared``).

Callers of one key in one event loop await one flight; a stale entry is refreshed
by one background task (which takes the cross-process lock itself) while every
caller gets the stale value at once.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from ... import _events
from ..._context import CallContext
from ..._policy import AsyncHandler
from ...state._base import LOCAL, StoreUnavailableError, agive_back, fall_back
from ._flight import NOTHING
from ._handlers import aserve_stale, passes
from ._shared import POLL_FIRST, POLL_MAX, FlightKey, SharedMiss, shared_keys, unencodable

if TYPE_CHECKING:
    from ._policy import Cache

__all__ = ["shared_async_handler"]


def shared_async_handler(cache: Cache, call_next: AsyncHandler,
                         local: AsyncHandler) -> tuple[AsyncHandler, SharedMiss]:
    """The async handler of ``cache`` on its store, and its miss path (for ``warm``)."""
    shared, store, flights = cache._shared, cache._shared_store, cache._shared_flights
    assert shared is not None
    assert store is not None
    assert flights is not None
    keys, hooks, clock = shared_keys(cache), cache.hooks, cache._clock
    single = shared.single_flight

    async def put(ctx: CallContext, key: str, fkey: FlightKey, value: Any) -> None:
        cache._store.remember(ctx.fn, ctx.service)  # for warm()
        if ctx.refused_result:  # a result ml.Retry refused (and returned): not kept
            return
        if flights.kept_out(fkey, asyncio.get_running_loop()):
            return  # invalidated while it was computed
        try:
            await shared.aput(key, fkey[0], value)
        except StoreUnavailableError as error:
            fall_back(cache, store, ctx, error, step="store")
        except TypeError as error:
            unencodable(fkey[0], error)

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

    async def compute(key: str, fkey: FlightKey, force: bool, ctx: CallContext) -> Any:
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
            await put(ctx, key, fkey, value)
            return value
        finally:
            await unlock(ctx, key, token)

    async def refresh(key: str, fkey: FlightKey, ctx: CallContext) -> Any:
        """Compute a stale entry again (in a task): ``NOTHING`` when another process
        does."""
        token = None
        if single is not None:
            try:
                token = await shared.alock(key)
            except StoreUnavailableError as error:
                fall_back(cache, store, ctx, error, step="lock")
            else:
                if token is None:
                    return NOTHING
        try:
            fresh = await call_next(ctx)
        finally:
            await unlock(ctx, key, token)
        await put(ctx, key, fkey, fresh)
        return fresh

    async def handle(ctx: CallContext) -> Any:
        if ctx.request is not None:  # an HTTP request: no key (see passes)
            passes(cache, ctx)
            return await call_next(ctx)
        key, fkey = keys(ctx)
        try:
            found = await shared.aget(key)
        except StoreUnavailableError as error:
            if fall_back(cache, store, ctx, error) == LOCAL:
                return await local(ctx)
            return await call_next(ctx)
        if found is None:
            cache._missed(ctx)
            return await flights.amiss(functools.partial(compute, key, fkey, False), ctx,
                                       fkey)
        value, is_stale = found
        if is_stale:
            return aserve_stale(cache, flights, functools.partial(refresh, key, fkey), ctx,
                                fkey, value)
        cache.hits += 1
        if hooks._hooks or _events._global_hooks:
            cache._hit(ctx)
        return value

    async def warm(ctx: CallContext, _key: Any, force: bool) -> Any:
        key, fkey = keys(ctx)
        return await flights.amiss(functools.partial(compute, key, fkey, force), ctx, fkey,
                                   force)

    return handle, warm
