"""The paths of a Cache whose entries live in a shared store (sync; async twins in
``_ashared``).

Chosen at wrap time only when ``store=`` is set: the in-memory handlers are not
touched. A call reads its entry from the store (one round trip). A miss is
computed once per process (the single flight of ``_flight``, in the Cache's own
table of flights, which every pipeline the Cache is in shares) and, when the
store has a ``cache_lock``, once across processes: the process that takes the
short lock computes and stores, the others poll the store for its entry until
the lock would have expired. When the store cannot answer, the call goes to the
Cache's in-memory handler (``on_error="local"``) or straight to the service
(``"allow"``, and ``"deny"`` too: a cache outage never refuses a call).

Keys must leave the process, so they are text: ``<module>.<qualname>:<JSON of the
arguments>`` (or of what ``key=`` returns), hashed with SHA-256 when long.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import _events
from ..._context import CallContext
from ..._context import operation_of as _operation_of
from ..._policy import Handler
from ...state._base import LOCAL, StoreUnavailableError, fall_back, give_back
from ._flight import NOTHING
from ._handlers import passes, serve_stale
from ._options import KeyFunction

if TYPE_CHECKING:
    from ._policy import Cache

__all__ = ["POLL_FIRST", "POLL_MAX", "FlightKey", "SharedMiss", "argument_text",
           "function_id", "shared_keys", "shared_sync_handler", "unencodable"]

_KEY_TEXT_MAX = 200
POLL_FIRST = 0.005
"""First pause of a process waiting for another one's entry; doubled up to POLL_MAX."""
POLL_MAX = 0.05

_log = logging.getLogger("meshlite.state")
_warned: set[str] = set()

SharedMiss = Callable[[CallContext, Any, bool], Any]
FlightKey = tuple[str, str]
"""The key of a shared cache's flight: (function id, argument text)."""


def function_id(fn: Any) -> str:
    """The name a function's entries are stored under: ``module.qualname``."""
    return f"{getattr(fn, '__module__', None) or ''}.{_operation_of(fn)}"


def argument_text(key: KeyFunction | None, args: tuple[Any, ...], kwargs: dict[str, Any],
                  where: str) -> str:
    """The argument part of a shared key: JSON, or its SHA-256 when long.

    Raises:
        TypeError: the arguments (or what ``key=`` returns) are not JSON.
    """
    value: Any
    if key is not None:
        value = key(*args, **kwargs)
    else:
        # A list without keyword arguments, an object with them: never equal.
        value = {"args": args, "kwargs": kwargs} if kwargs else args
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        what = "key= result" if key is not None else "arguments"
        raise TypeError(
            f"Cache: the {what} of {where} cannot make a shared cache key ({error}); "
            "with a store, keys are JSON: pass key= returning a string, a number or a "
            "tuple of them") from None
    if len(text) > _KEY_TEXT_MAX:
        text = "#" + hashlib.sha256(text.encode()).hexdigest()
    return text


def shared_keys(cache: Cache) -> Callable[[CallContext], tuple[str, FlightKey]]:
    """``keys(ctx) -> (entry key, (function id, argument text))`` for ``cache``: the
    key in the store, and the key of the call's flight."""
    key_fn = cache.options.key

    def keys(ctx: CallContext) -> tuple[str, FlightKey]:
        fn = function_id(ctx.fn)
        text = argument_text(key_fn, ctx.args, ctx.kwargs, repr(ctx.operation))
        return f"{fn}:{text}", (fn, text)

    return keys


def unencodable(fn: str, error: TypeError) -> None:
    """Log, once per function, that its results cannot be stored."""
    if fn not in _warned:
        _warned.add(fn)
        _log.warning("%s; results of %s are not cached", error, fn)


def shared_sync_handler(cache: Cache, call_next: Handler,
                        local: Handler) -> tuple[Handler, SharedMiss]:
    """The sync handler of ``cache`` on its store, and its miss path (for ``warm``)."""
    shared, store, flights = cache._shared, cache._shared_store, cache._shared_flights
    assert shared is not None
    assert store is not None
    assert flights is not None
    keys, hooks, clock = shared_keys(cache), cache.hooks, cache._clock
    single = shared.single_flight

    def put(ctx: CallContext, key: str, fkey: FlightKey, value: Any) -> None:
        if flights.kept_out(fkey, None):
            return  # invalidated while it was computed
        try:
            shared.put(key, fkey[0], value)
        except StoreUnavailableError as error:
            fall_back(cache, store, ctx, error, step="store")
        except TypeError as error:
            unencodable(fkey[0], error)

    def contend(ctx: CallContext, key: str) -> tuple[Any, str | None]:
        """Take the cross-process lock (``(NOTHING, token)``), or get the entry the
        process holding it stored (``(value, None)``); ``(NOTHING, None)`` to compute
        without the lock."""
        left = ctx.remaining()
        budget = single if left is None or single is None else min(single, left)
        delay, waited = POLL_FIRST, 0.0
        try:
            while True:
                token = shared.lock(key)
                found = shared.get(key)  # stored just before we took the lock?
                if found is not None:
                    if token is not None:
                        shared.unlock(key, token)
                    return found[0], None
                if token is not None or budget is None or waited >= budget:
                    return NOTHING, token
                clock.sleep(delay)
                waited += delay
                delay = min(2 * delay, POLL_MAX)
        except StoreUnavailableError as error:
            fall_back(cache, store, ctx, error, step="lock")  # no single flight
            return NOTHING, None

    def compute(key: str, fkey: FlightKey, force: bool, ctx: CallContext) -> Any:
        token = None
        if single is not None and not force:
            found, token = contend(ctx, key)
            if found is not NOTHING:
                return found
        elif not force:
            # Look again, as the in-memory cache does under its lock: a flight of this
            # process may have stored the entry since this caller's first look.
            try:
                again = shared.get(key)
            except StoreUnavailableError as error:
                fall_back(cache, store, ctx, error, step="read")
            else:
                if again is not None:
                    return again[0]
        try:
            value = call_next(ctx)
            put(ctx, key, fkey, value)
            return value
        finally:
            if token is not None:
                give_back(cache, store, ctx, lambda: shared.unlock(key, token))

    def refresh(key: str, fkey: FlightKey, ctx: CallContext) -> Any:
        """Compute a stale entry again: ``NOTHING`` when another process does."""
        token = None
        if single is not None:
            try:
                token = shared.lock(key)
            except StoreUnavailableError as error:
                fall_back(cache, store, ctx, error, step="lock")
            else:
                if token is None:
                    return NOTHING
        try:
            fresh = call_next(ctx)
        finally:
            if token is not None:
                give_back(cache, store, ctx, lambda: shared.unlock(key, token))
        put(ctx, key, fkey, fresh)
        return fresh

    def handle(ctx: CallContext) -> Any:
        if ctx.request is not None:  # an HTTP request: no key (see passes)
            passes(cache, ctx)
            return call_next(ctx)
        key, fkey = keys(ctx)
        try:
            found = shared.get(key)
        except StoreUnavailableError as error:
            if fall_back(cache, store, ctx, error) == LOCAL:
                return local(ctx)
            return call_next(ctx)
        if found is None:
            cache._missed(ctx)
            return flights.miss(functools.partial(compute, key, fkey, False), ctx, fkey)
        value, is_stale = found
        if is_stale:
            return serve_stale(cache, flights, functools.partial(refresh, key, fkey), ctx,
                               fkey, value)
        cache.hits += 1
        if hooks._hooks or _events._global_hooks:
            cache._hit(ctx)
        return value

    def warm(ctx: CallContext, _key: Any, force: bool) -> Any:
        key, fkey = keys(ctx)
        return flights.miss(functools.partial(compute, key, fkey, force), ctx, fkey, force)

    return handle, warm
