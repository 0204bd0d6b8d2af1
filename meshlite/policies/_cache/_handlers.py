"""The per-call paths of :class:`Cache`: hit handlers, stale serving, refreshes.

The handlers are built once per pipeline with everything they need in closure
variables. The one most used (default key, no ``stale_ttl``) is spelled out on its
own: it is what the cache-hit benchmark measures against ``cachetools.cached``. On a
hit, ``hooks.active`` is inlined (``EventHooks`` keeps its subscribers in ``_hooks``
and the process-wide ones in ``_events._global_hooks``): the property call alone
costs a tenth of a ``cachetools`` hit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import TYPE_CHECKING, Any

from ... import _events
from ..._context import CallContext, _current
from ..._policy import AsyncHandler, Handler
from ._flight import NOTHING, Flight, Flights
from ._options import KeyFunction, kwargs_key

if TYPE_CHECKING:
    from ._policy import Cache

__all__ = ["aserve_stale", "async_handler", "passes", "serve_stale", "sync_handler"]

_log = logging.getLogger("meshlite.cache")
_told: weakref.WeakSet[Cache] = weakref.WeakSet()
"""The caches that have logged that they pass HTTP requests through (once each)."""


def passes(cache: Cache, ctx: CallContext) -> None:
    """An HTTP request (``mesh.http()``, ``mesh.http_sync()``, ``mesh.aiohttp()``)
    reached ``cache`` in its service's pipeline: it goes past, neither looked up nor
    stored. Its arguments are the request itself, new each time, so it could never
    hit, and storing it would hold up to ``maxsize`` responses. Said once a cache."""
    if cache not in _told:
        _told.add(cache)
        _log.warning("%r in the pipeline of service %r does not cache HTTP requests (a "
                     "request is no cache key): they go past it. Cache in the function "
                     "that makes the request instead, or call through mesh.call()",
                     cache, ctx.service)


def sync_handler(cache: Cache, call_next: Handler, key: KeyFunction | None = None) -> Handler:
    """The sync handler of ``cache`` around ``call_next``; ``key`` replaces the
    Cache's ``key=`` (the in-memory fallback of a shared cache keys by digest)."""
    key = cache.options.key if key is None else key
    if key is None and cache.options.stale_ttl == 0:
        return _sync_plain(cache, call_next)
    return _sync_general(cache, call_next, key)


def async_handler(cache: Cache, call_next: AsyncHandler,
                  key: KeyFunction | None = None) -> AsyncHandler:
    """The async handler of ``cache`` around ``call_next`` (``key``: as for
    :func:`sync_handler`)."""
    key = cache.options.key if key is None else key
    if key is None and cache.options.stale_ttl == 0:
        return _async_plain(cache, call_next)
    return _async_general(cache, call_next, key)


def _sync_plain(cache: Cache, call_next: Handler) -> Handler:
    store, hooks, now = cache._store, cache.hooks, cache._clock.monotonic
    (get, touch), miss = store.reader(), store.miss

    def hit_or_call(ctx: CallContext) -> Any:
        kwargs = ctx.kwargs
        key = (ctx.fn, kwargs_key(ctx.args, kwargs) if kwargs else ctx.args)
        try:
            entry = get(key)
        except TypeError:
            raise cache._unhashable(ctx) from None
        if entry is None or now() >= entry[1]:
            if ctx.request is not None:
                passes(cache, ctx)
                return call_next(ctx)
            cache._missed(ctx)
            return miss(call_next, ctx, key)
        try:  # noqa: SIM105 - suppress() costs a context manager per hit
            touch(key)
        except KeyError:  # evicted or invalidated just now: still an answer
            pass
        cache.hits += 1
        if hooks._hooks or _events._global_hooks:  # hooks.active, minus a property call
            cache._hit(ctx)
        return entry[0]

    return hit_or_call


def _async_plain(cache: Cache, call_next: AsyncHandler) -> AsyncHandler:
    store, hooks, now = cache._store, cache.hooks, cache._clock.monotonic
    (get, touch), miss = store.reader(), store.amiss

    async def hit_or_call(ctx: CallContext) -> Any:
        kwargs = ctx.kwargs
        key = (ctx.fn, kwargs_key(ctx.args, kwargs) if kwargs else ctx.args)
        try:
            entry = get(key)
        except TypeError:
            raise cache._unhashable(ctx) from None
        if entry is None or now() >= entry[1]:
            if ctx.request is not None:
                passes(cache, ctx)
                return await call_next(ctx)
            cache._missed(ctx)
            return await miss(call_next, ctx, key)
        try:  # noqa: SIM105 - suppress() costs a context manager per hit
            touch(key)
        except KeyError:
            pass
        cache.hits += 1
        if hooks._hooks or _events._global_hooks:
            cache._hit(ctx)
        return entry[0]

    return hit_or_call


def _sync_general(cache: Cache, call_next: Handler, key_fn: KeyFunction | None) -> Handler:
    store, hooks, now = cache._store, cache.hooks, cache._clock.monotonic
    (get, touch), miss = store.reader(), store.miss
    stale_ttl = cache.options.stale_ttl

    def handle(ctx: CallContext) -> Any:
        if ctx.request is not None:  # before key(): it would get the request's insides
            passes(cache, ctx)
            return call_next(ctx)
        if key_fn is None:
            kwargs = ctx.kwargs
            key = (ctx.fn, kwargs_key(ctx.args, kwargs) if kwargs else ctx.args)
        else:
            key = (ctx.fn, key_fn(*ctx.args, **ctx.kwargs))
        try:
            entry = get(key)
        except TypeError:
            raise cache._unhashable(ctx) from None
        if entry is not None:
            age = now() - entry[1]  # < 0 while fresh
            if age < stale_ttl:
                try:  # noqa: SIM105 - suppress() costs a context manager per hit
                    touch(key)
                except KeyError:
                    pass
                if age >= 0:
                    return serve_stale(cache, store, call_next, ctx, key, entry[0])
                cache.hits += 1
                if hooks._hooks or _events._global_hooks:
                    cache._hit(ctx)
                return entry[0]
        cache._missed(ctx)
        return miss(call_next, ctx, key)

    return handle


def _async_general(cache: Cache, call_next: AsyncHandler,
                   key_fn: KeyFunction | None) -> AsyncHandler:
    store, hooks, now = cache._store, cache.hooks, cache._clock.monotonic
    (get, touch), miss = store.reader(), store.amiss
    stale_ttl = cache.options.stale_ttl

    async def handle(ctx: CallContext) -> Any:
        if ctx.request is not None:
            passes(cache, ctx)
            return await call_next(ctx)
        if key_fn is None:
            kwargs = ctx.kwargs
            key = (ctx.fn, kwargs_key(ctx.args, kwargs) if kwargs else ctx.args)
        else:
            key = (ctx.fn, key_fn(*ctx.args, **ctx.kwargs))
        try:
            entry = get(key)
        except TypeError:
            raise cache._unhashable(ctx) from None
        if entry is not None:
            age = now() - entry[1]
            if age < stale_ttl:
                try:  # noqa: SIM105 - suppress() costs a context manager per hit
                    touch(key)
                except KeyError:
                    pass
                if age >= 0:
                    return aserve_stale(cache, store, call_next, ctx, key, entry[0])
                cache.hits += 1
                if hooks._hooks or _events._global_hooks:
                    cache._hit(ctx)
                return entry[0]
        cache._missed(ctx)
        return await miss(call_next, ctx, key)

    return handle


# -- stale entries (the in-memory cache's and the shared cache's) ------------------------


def serve_stale(cache: Cache, flights: Flights, compute: Handler, ctx: CallContext, key: Any,
                value: Any) -> Any:
    """Sync: the first caller to see the entry stale refreshes it inline with
    ``compute`` (no thread is left behind); callers arriving meanwhile get the stale
    value at once, as does the refreshing one when the refresh fails or ``compute``
    gives ``NOTHING`` (another process refreshes)."""
    flight = flights.start(key, None)
    if flight is not None:
        try:
            fresh = flights.lead(compute, ctx, key, flight)
        except Exception as error:
            cache._refresh_failed(ctx, error)
        else:
            if fresh is not NOTHING:
                cache._missed(ctx)
                return fresh
    cache._stale_served(ctx)
    return value


def aserve_stale(cache: Cache, flights: Flights, compute: AsyncHandler, ctx: CallContext,
                 key: Any, value: Any) -> Any:
    """Async: one background task refreshes with ``compute``; every caller gets the
    stale value now."""
    loop = asyncio.get_running_loop()
    flight = flights.start(key, loop)
    if flight is not None:
        # The refresh outlives this call, so it gets a context of its own: not this
        # caller's deadline, span or attempt count.
        own = CallContext(ctx.fn, ctx.args, ctx.kwargs, ctx.operation, ctx.service)
        try:
            task = loop.create_task(_refresh(cache, flights, compute, own, key, flight))
        except BaseException:
            flights.land(key, flight)
            raise
        cache._tasks.add(task)
        task.add_done_callback(functools.partial(_refresh_done, cache, flights, key, flight))
    cache._stale_served(ctx)
    return value


async def _refresh(cache: Cache, flights: Flights, compute: AsyncHandler, ctx: CallContext,
                   key: Any, flight: Flight) -> None:
    _current.set(ctx)  # the task runs in its own copy of the context
    try:
        await flights.alead(compute, ctx, key, flight)
    except Exception as error:
        cache._refresh_failed(ctx, error)


def _refresh_done(cache: Cache, flights: Flights, key: Any, flight: Flight,
                  task: asyncio.Task[None]) -> None:
    cache._tasks.discard(task)
    # A task cancelled before it ran never landed its flight: do it here (a no-op
    # for a flight already landed).
    flights.land(key, flight)
