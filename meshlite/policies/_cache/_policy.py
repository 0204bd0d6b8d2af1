"""Cache: a TTL cache of results, with single flight and stale-while-revalidate."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, ParamSpec, TypeVar

from ..._clock import SYSTEM_CLOCK, Clock
from ..._context import CallContext
from ..._policy import AsyncHandler, Decorated, Handler, Policy
from ..._validate import fail
from ...state._base import SharedCache, Store, StoreUnavailableError, fall_back
from ._ashared import shared_async_handler
from ._flight import Flights
from ._handlers import async_handler, sync_handler
from ._keys import ArgumentDigest, argument_digest
from ._options import (
    DEFAULT_CACHE_MAXSIZE,
    DEFAULT_CACHE_STALE_TTL,
    CacheHit,
    CacheMiss,
    CacheOptions,
    CacheRefreshFailed,
    CacheStaleServed,
    Key,
    KeyFunction,
    argument_key,
    unhashable_error,
)
from ._shared import shared_sync_handler
from ._store import CacheStore
from ._warm import warm

__all__ = ["Cache"]

P = ParamSpec("P")
T = TypeVar("T")

_Miss = Callable[[CallContext, Key, bool], Any]
_AsyncMiss = Callable[[CallContext, Key, bool], Coroutine[Any, Any, Any]]


class Cache(Policy):
    """Answer repeated calls from a TTL cache of results.

    Entries are keyed by the called function and its arguments, so one ``Cache``
    shared by several functions never mixes their results. Concurrent misses of
    one key make one call (single flight), for threads and for tasks alike; the
    callers waiting on it get its result or its error. Errors are never cached. When
    the leading call is cancelled (or interrupted), one waiting caller takes over.

    With ``stale_ttl > 0`` an entry past ``ttl`` is still served for ``stale_ttl``
    more seconds while one refresh runs: in an async task in the background, or, for
    sync calls, inline by the first caller that sees the entry stale (no thread is
    ever left running). A failed refresh keeps the stale entry until it expires.

    ``hits``, ``misses`` and ``stale`` count answers (plain ints: a few increments
    may be lost when threads race; they are statistics, not accounting).

    Args:
        ttl: Seconds an entry is fresh.
        maxsize: Entries kept; the least recently used one is evicted first.
        key: ``key(*args, **kwargs)`` returns the cache key of a call; by default
            the arguments themselves, which must then be hashable.
        stale_ttl: Seconds a stale entry may still be served while it is refreshed.
        store: ``None`` to keep entries in process, or a shared store such as
            :class:`meshlite.state.RedisStore`: entries then live there (TTL kept by
            the store, invalidations seen by every process), keyed by the function's
            ``module.qualname`` and a digest of the JSON of the arguments (or of
            ``key=``): no argument is readable in the store's keys.
        clock: The clock entries age on (default: the system clock).
        name: The namespace of the entries in the store (``"default"``); ``invalidate``
            drops an argument's entries for every function of the namespace.
        key_secret: With a store, the secret the arguments' digests are keyed with,
            the same in every process sharing the namespace (default: the
            ``MESHLITE_CACHE_KEY_SECRET`` environment variable, else none: a reader
            of the keys could then confirm guessed arguments by hashing them).

    Raises:
        ConfigError: an option is out of range.
        TypeError: at call time, when the call's arguments are not hashable and no
            ``key=`` is given.

    Example::

        @ml.Cache(ttl=30.0, stale_ttl=300.0)
        async def get_user(uid: int) -> dict: ...
    """

    kind = "cache"

    def __init__(
        self,
        ttl: float,
        maxsize: int = DEFAULT_CACHE_MAXSIZE,
        key: KeyFunction | None = None,
        stale_ttl: float = DEFAULT_CACHE_STALE_TTL,
        store: Any = None,
        *,
        clock: Clock | None = None,
        name: str | None = None,
        key_secret: str | bytes | None = None,
    ) -> None:
        super().__init__()
        self.options = CacheOptions(
            ttl=ttl, maxsize=maxsize, key=key, stale_ttl=stale_ttl, store=store, name=name,
            key_secret=key_secret,
        )
        if clock is not None and not isinstance(clock, Clock):
            fail("Cache", "clock", clock, "a meshlite Clock or None")
        self._clock: Clock = clock or SYSTEM_CLOCK
        o = self.options
        self._store = CacheStore(o.maxsize, o.ttl, o.stale_ttl, self._clock)
        self._tasks: set[asyncio.Task[None]] = set()  # background refreshes, kept alive
        # The miss paths of the last pipeline built around this Cache, for warm().
        self._sync_miss: _Miss | None = None
        self._async_miss: _AsyncMiss | None = None
        self.hits = 0
        self.misses = 0
        self.stale = 0
        self._shared_store: Store | None = store
        self._shared: SharedCache | None = None if store is None else store.cache(
            name or "default", o.ttl, o.stale_ttl)
        # With a store, this process's calls in flight (every pipeline's).
        self._shared_flights: Flights | None = None if store is None else Flights()
        # With a store, what stands for the arguments in a key (see _keys).
        self._digest: ArgumentDigest | None = None if store is None else ArgumentDigest(
            name or "default", key_secret)

    # -- the policy contract --------------------------------------------------------

    def wrap(self, call_next: Handler) -> Handler:
        if self._shared is not None:
            handler, self._sync_miss = shared_sync_handler(
                self, call_next, sync_handler(self, call_next, key=self._digest_key))
            return handler
        self._sync_miss = functools.partial(self._store.miss, call_next)
        return sync_handler(self, call_next)

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        if self._shared is not None:
            ahandler, self._async_miss = shared_async_handler(
                self, call_next, async_handler(self, call_next, key=self._digest_key))
            return ahandler
        self._async_miss = functools.partial(self._store.amiss, call_next)
        return async_handler(self, call_next)

    # -- management -------------------------------------------------------------------

    def invalidate(self, *args: Any, **kwargs: Any) -> int:
        """Drop the entry of a call with these arguments, for every function served.

        A call for these arguments already running is not stored when it returns
        (its callers still get its result). With a store, the entries are dropped
        from the store, for every process and every function of the namespace.

        Returns:
            How many entries were removed (from the store, when there is one).

        Raises:
            TypeError: the arguments (or what ``key=`` makes of them) are not hashable;
                with a store, not JSON (they need not be hashable then).
            StoreUnavailableError: the store did not answer and its
                ``on_error`` is ``"raise"`` (otherwise only this process's entries go).
        """
        argkey = self._argument_key("invalidate()", args, kwargs)
        removed = self._store.invalidate(argkey)  # (with a store: the fallback's entries)
        if self._shared_flights is None:
            return removed
        text = argkey
        assert isinstance(text, str)
        with self._shared_flights.lock:  # before the store drops the entries
            self._shared_flights.keep_out(text)
        return self._manage(lambda shared: shared.invalidate(text), removed)

    def clear(self) -> None:
        """Drop every entry; calls already running are not stored when they return.

        With a store, every entry of the namespace goes, for every process.

        Raises:
            StoreUnavailableError: as for :meth:`invalidate`.
        """
        self._store.clear()
        if self._shared_flights is not None:
            with self._shared_flights.lock:
                self._shared_flights.keep_out_all()
            self._manage(lambda shared: shared.clear(), 0)

    def _manage(self, operation: Callable[[SharedCache], int], local: int) -> int:
        assert self._shared is not None
        assert self._shared_store is not None
        try:
            return operation(self._shared)
        except StoreUnavailableError as error:
            fall_back(self, self._shared_store, None, error, step="manage")
            return local

    def warm(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the entry for these arguments now and store it, even if one is cached.

        The call goes through the policies below the Cache, joining an identical call
        already running. It needs the one function this Cache serves: the function it
        decorates (``@ml.Cache(...)``), or the one it has seen calls of (inside a
        pipeline). For an async function, await the result.

        Returns:
            The value (a coroutine of it for an async function).

        Raises:
            ConfigError: the Cache serves no function yet, or several.
            TypeError: the arguments are not hashable (with a store: not JSON).
        """
        return warm(self, args, kwargs)

    @property
    def size(self) -> int:
        """Entries held now, stale ones included."""
        return self._store.size()

    # -- decorating -------------------------------------------------------------------

    # One signature for both kinds: an async function is a Callable[P, Coroutine[...]]
    # and stays one. (Overloads for the two made a sync function returning Any match
    # the async one, so its signature came out erased.)
    def __call__(self, fn: Callable[P, T]) -> Decorated[P, T]:
        """Decorate ``fn``; the Cache then knows the function :meth:`warm` calls.

        Raises:
            TypeError: ``fn`` is not callable or not hashable.
        """
        try:
            hash(fn)
        except TypeError:
            raise unhashable_error(repr(fn), fn, (), {}, None) from None
        wrapped = super().__call__(fn)
        self._store.pin(fn)
        return wrapped

    # -- helpers ------------------------------------------------------------------------

    def _argument_key(self, where: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        """The arguments' part of an entry's key here: with a store, their digest
        (what they need to be is JSON, and the in-memory fallback keys by it too)."""
        if self._digest is not None:
            return argument_digest(self.options.key, args, kwargs, where, self._digest)
        argkey = argument_key(self.options.key, args, kwargs)
        try:
            hash(argkey)
        except TypeError:
            raise unhashable_error(where, None, args, kwargs, self.options.key) from None
        return argkey

    def _digest_key(self, *args: Any, **kwargs: Any) -> str:
        """``key=`` of the in-memory fallback of a Cache with a store: the digest that
        keys the call in the store (its arguments need not be hashable)."""
        assert self._digest is not None
        return argument_digest(self.options.key, args, kwargs, "a call", self._digest)

    def _unhashable(self, ctx: CallContext) -> TypeError:
        return unhashable_error(
            repr(ctx.operation), ctx.fn, ctx.args, ctx.kwargs, self.options.key
        )

    def _hit(self, ctx: CallContext) -> None:
        self._emit(CacheHit(policy=self.kind, service=ctx.service, operation=ctx.operation))

    def _missed(self, ctx: CallContext) -> None:
        self.misses += 1
        if self.hooks.active:
            self._emit(CacheMiss(policy=self.kind, service=ctx.service, operation=ctx.operation))

    def _stale_served(self, ctx: CallContext) -> None:
        self.stale += 1
        if self.hooks.active:
            self._emit(
                CacheStaleServed(policy=self.kind, service=ctx.service, operation=ctx.operation)
            )

    def _refresh_failed(self, ctx: CallContext, error: BaseException) -> None:
        if self.hooks.active:
            self._emit(CacheRefreshFailed(
                policy=self.kind, service=ctx.service, operation=ctx.operation, error=error))

    def __repr__(self) -> str:
        o = self.options
        extra = f", key={o.key!r}" if o.key is not None else ""
        stale = f", stale_ttl={o.stale_ttl!r}" if o.stale_ttl else ""
        return f"Cache(ttl={o.ttl!r}, maxsize={o.maxsize!r}{extra}{stale})"
