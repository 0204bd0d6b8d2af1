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

Keys must leave the process, so they are text: ``<module>.<qualname>:<digest>``,
the digest standing for the JSON of the arguments (or of what ``key=`` returns)
without showing it (see ``_keys``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import _events
from ..._context import CallContext
from ..._context import operation_of as _operation_of
from ..._fork import fork_safe
from ..._policy import Handler
from ...state._base import LOCAL, StoreUnavailableError, fall_back, give_back
from ._flight import NOTHING
from ._handlers import passes, serve_stale
from ._keys import argument_digest

if TYPE_CHECKING:
    from ._policy import Cache

__all__ = ["MAX_FUNCTION_NAMES", "POLL_FIRST", "POLL_MAX", "FlightKey", "SharedMiss",
           "function_id", "shared_keys", "shared_sync_handler", "unencodable"]

POLL_FIRST = 0.005
"""First pause of a process waiting for another one's entry; doubled up to POLL_MAX."""
POLL_MAX = 0.05

_log = logging.getLogger("meshlite.state")
_warned: set[str] = set()

SharedMiss = Callable[[CallContext, Any, bool], Any]
FlightKey = tuple[str, str]
"""The key of a shared cache's flight: (function id, argument digest)."""


def function_id(fn: Any) -> str:
    """The name a function's entries are stored under: ``module.qualname``."""
    return f"{getattr(fn, '__module__', None) or ''}.{_operation_of(fn)}"


_PLAIN = (int, float, str, bytes, bool, type(None))


def _definition(fn: Any) -> tuple[Any, ...]:
    """What makes ``fn`` the function it is beyond its name: its code, the values
    it closes over, its defaults and the object it is bound to (plain values by
    value, others by identity; the tuple holds them, so an identity stays valid)."""
    owner = getattr(fn, "__self__", None)
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    if code is None:  # a builtin (bound to its module or object) or another callable
        return (owner if owner is not None else fn,)
    parts: list[Any] = [code, owner]
    for cell in func.__closure__ or ():
        try:
            parts.append(cell.cell_contents)
        except ValueError:  # a cell not yet filled
            parts.append(_EMPTY)
    parts.extend(func.__defaults__ or ())
    parts.extend((func.__kwdefaults__ or {}).items())
    return tuple(parts)


_EMPTY = object()


def _same(one: tuple[Any, ...], other: tuple[Any, ...]) -> bool:
    return len(one) == len(other) and all(
        a is b or (type(a) is type(b) and type(a) in _PLAIN and a == b)
        or (type(a) is tuple and type(b) is tuple and _same(a, b))  # (a keyword default)
        for a, b in zip(one, other, strict=True))


MAX_FUNCTION_NAMES = 4096
"""Function names (``module.qualname``) per namespace whose function :class:`FunctionNames`
remembers; past them the least recently called is forgotten."""


class FunctionNames:
    """The function each name in one namespace of a store stands for in this
    process: the first one a call used it for.

    Shared entries are keyed by name, since nothing else is the same in every
    process. Two functions of one name (closures made by one factory over other
    values, a lambda made in a loop, a method bound to another object) would answer
    each other's calls there, while in memory each has its own entries:
    :meth:`check` refuses the second instead. Another function object of the same
    definition (the same code over the same values, as a lambda made anew for each
    call is) is that function. The first one is kept, one per name, with its
    definition as it was when first seen (a closure's own state may change later),
    for the :data:`MAX_FUNCTION_NAMES` names last called: functions named per call
    (a qualified name made at run time) must not keep every one of them, and what
    they close over, for the life of the process.
    """

    def __init__(self) -> None:
        self._first: OrderedDict[str, tuple[Any, tuple[Any, ...]]] = OrderedDict()
        self._also: dict[str, weakref.WeakSet[Any]] = {}

    def check(self, name: str, fn: Any, namespace: str) -> None:
        """Raises:
            TypeError: ``name`` already stands for another function here.
        """
        names = self._first
        first = names.get(name)
        if first is None:
            names.setdefault(name, (fn, _definition(fn)))
            if len(names) > MAX_FUNCTION_NAMES:
                with contextlib.suppress(KeyError):  # (another thread took it first)
                    gone, _ = names.popitem(last=False)
                    self._also.pop(gone, None)
            return
        try:  # noqa: SIM105 - suppress() costs a context manager per call
            names.move_to_end(name)
        except KeyError:  # forgotten meanwhile by another thread
            pass
        if fn is first[0] or fn == first[0]:  # (a method bound anew is equal)
            return
        also = self._also.get(name)
        with contextlib.suppress(TypeError):  # (an unhashable callable object)
            if also is not None and fn in also:
                return
        if not _same(first[1], _definition(fn)):
            raise TypeError(
                f"Cache {namespace!r}: {name!r} names two different functions here (a "
                "closure over other values, a lambda made in a loop, or a method of "
                "another object), and with a store entries are keyed by name: their "
                "calls would answer each other. Pass what differs as arguments "
                "(pipeline.call(fetch, uid), not pipeline.call(lambda: fetch(uid))), or "
                "give each its own Cache(name=...)")
        with contextlib.suppress(TypeError):  # not weakly referable: compared again
            self._also.setdefault(name, weakref.WeakSet()).add(fn)


_names: weakref.WeakKeyDictionary[Any, dict[str, FunctionNames]] = weakref.WeakKeyDictionary()
_names_lock = fork_safe(threading.Lock())


def names_of(store: Any, namespace: str) -> FunctionNames:
    """The :class:`FunctionNames` of ``namespace`` in ``store`` (every Cache of that
    name on that store shares its entries, so they share it too)."""
    with _names_lock:
        spaces = _names.setdefault(store, {})
        names = spaces.get(namespace)
        if names is None:
            names = spaces[namespace] = FunctionNames()
        return names


def shared_keys(cache: Cache) -> Callable[[CallContext], tuple[str, FlightKey]]:
    """``keys(ctx) -> (entry key, (function id, argument digest))`` for ``cache``:
    the key in the store, and the key of the call's flight."""
    key_fn, digest = cache.options.key, cache._digest
    assert digest is not None
    namespace = cache.options.name or "default"
    check = names_of(cache._shared_store, namespace).check

    def keys(ctx: CallContext) -> tuple[str, FlightKey]:
        fn = function_id(ctx.fn)
        check(fn, ctx.fn, namespace)
        text = argument_digest(key_fn, ctx.args, ctx.kwargs, repr(ctx.operation), digest)
        return f"{fn}:{text}", (fn, text)

    return keys


def unencodable(fn: str, error: TypeError) -> None:
    """Log, once per function, that its results cannot be stored."""
    if fn not in _warned:
        if len(_warned) >= MAX_FUNCTION_NAMES:  # (functions named per call)
            _warned.clear()
        _warned.add(fn)
        _log.warning("%s; that result of %s is not cached, nor are its next ones the "
                     "codec refuses (logged once per function)", error, fn)


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
        cache._store.remember(ctx.fn, ctx.service)  # for warm()
        if ctx.refused_result:  # a result ml.Retry refused (and returned): not kept
            return
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
