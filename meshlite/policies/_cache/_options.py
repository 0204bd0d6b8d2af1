"""Cache options, defaults, events and cache keys."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import cachetools

from ..._events import Event
from ..._validate import at_least, fail, non_negative, not_coroutine, positive
from ...state._base import check_store

__all__ = [
    "DEFAULT_CACHE_MAXSIZE",
    "DEFAULT_CACHE_STALE_TTL",
    "CacheHit",
    "CacheMiss",
    "CacheOptions",
    "CacheRefreshFailed",
    "CacheStaleServed",
    "KeyFunction",
]

DEFAULT_CACHE_MAXSIZE = 1024
"""Entries kept before the least recently used one is evicted."""

DEFAULT_CACHE_STALE_TTL = 0.0
"""No stale serving: an entry is dropped as soon as its ``ttl`` ends."""

KeyFunction = Callable[..., Hashable]
"""``key=``: called with the call's arguments, returns a hashable cache key."""

Key: TypeAlias = tuple[Any, Hashable]
"""A cache key: ``(function, key of the arguments)``."""

Entry: TypeAlias = tuple[Any, float]
"""A cache entry: ``(value, fresh_until)`` on the Cache's clock."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheOptions:
    """Validated options of :class:`Cache`."""

    ttl: float
    maxsize: int = DEFAULT_CACHE_MAXSIZE
    key: KeyFunction | None = None
    stale_ttl: float = DEFAULT_CACHE_STALE_TTL
    store: Any = None
    name: str | None = None
    key_secret: str | bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.ttl, cachetools.Cache):  # @cached(TTLCache(...)) carried over
            # (its type only: its repr lists the entries, the cached data)
            fail("Cache", "ttl", type(self.ttl).__name__,
                 "a number of seconds; for a cachetools TTLCache(maxsize, ttl), pass "
                 "ttl=cache.ttl, maxsize=int(cache.maxsize): the Cache keeps a TTLCache "
                 "of its own, and the entries of yours are not carried over")
        object.__setattr__(self, "ttl", positive("Cache", "ttl", self.ttl))
        at_least("Cache", "maxsize", self.maxsize, 1)
        object.__setattr__(
            self, "stale_ttl", non_negative("Cache", "stale_ttl", self.stale_ttl)
        )
        if self.key is not None and not callable(self.key):
            fail("Cache", "key", self.key, "a function of the call's arguments, or None")
        not_coroutine("Cache", "key", self.key)
        check_store("Cache", self.store, "cache")
        secret = self.key_secret
        if secret is not None and (not isinstance(secret, str | bytes) or not secret):
            # Only its type is shown: a secret of the wrong type is a secret still.
            fail("Cache", "key_secret", type(secret).__name__ if secret else secret,
                 "a non-empty string or bytes, or None")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            fail("Cache", "name", self.name, "a non-empty string or None")
        if self.store is not None and self.name is not None and not _SEGMENTS.isdisjoint(
                self.name.split(":")):
            # A store keys entries <namespace>:e:..., locks <namespace>:l:... and its
            # index <namespace>:fns: clear() of "users" would take "users:e"'s keys.
            fail("Cache", "name", self.name, "a name none of whose ':'-separated parts "
                 "is 'e', 'l' or 'fns' (the store's key layout uses them)")


_SEGMENTS = frozenset(("e", "l", "fns"))


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheHit(Event):
    """A fresh entry answered the call; nothing ran below the cache."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheMiss(Event):
    """No entry answered: the call ran, or waited for the same call already running."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStaleServed(Event):
    """An entry past ``ttl`` (within ``stale_ttl``) answered while it is refreshed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheRefreshFailed(Event):
    """Refreshing a stale entry failed; the stale entry is kept until it expires."""

    error: BaseException


# -- keys ---------------------------------------------------------------------

# Separates positional from keyword arguments in a key, so f(1, ("a", 2)) and
# f(1, a=2) never share an entry. Private, so no argument can equal it.
_KWARGS: Any = object()


def kwargs_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    """The key of a call with keyword arguments (keyword order does not matter)."""
    return (args, _KWARGS, tuple(sorted(kwargs.items())))


def argument_key(
    key: KeyFunction | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Hashable:
    """The part of a cache key that comes from the call's arguments."""
    if key is not None:
        return key(*args, **kwargs)
    return kwargs_key(args, kwargs) if kwargs else args


def _culprit(value: object) -> str:
    """The type name of the first unhashable thing in ``value`` (tuples searched)."""
    if isinstance(value, tuple):
        for item in value:
            try:
                hash(item)
            except TypeError:
                return _culprit(item)
    return type(value).__name__


def unhashable_error(
    where: str,
    fn: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: KeyFunction | None,
) -> TypeError:
    """The TypeError raised when a call's cache key cannot be hashed."""
    try:
        hash(fn)
    except TypeError:
        return TypeError(
            f"Cache: the function {where} is not hashable ({type(fn).__name__}); "
            "a Cache keys its entries by function, so give it a hashable callable"
        )
    if key is not None:
        culprit = _culprit(key(*args, **kwargs))
        return TypeError(
            f"Cache: key= returned an unhashable value for {where} ({culprit}); "
            "make it return a hashable key such as a tuple, a string or a number"
        )
    if args and _is_method_of(fn, args[0]):
        try:
            hash(args[0])
        except TypeError:
            kind = type(args[0]).__name__
            return TypeError(
                f"Cache: the arguments of {where} are not hashable ({kind}, the object "
                f"the method is called on); give {kind} a __hash__, or pass key= that "
                "leaves the object out or names what matters of it, e.g. "
                "key=lambda self, *args: args"
            )
    culprit = _culprit((*args, *kwargs.values()))
    return TypeError(
        f"Cache: the arguments of {where} are not hashable ({culprit}); "
        "pass key= to build a cache key, e.g. key=lambda items: tuple(items)"
    )


def _is_method_of(fn: object, obj: object) -> bool:
    """Whether ``fn`` is the function a method of ``obj``'s class was decorated
    from (``obj`` is then its ``self``)."""
    try:
        found = getattr(type(obj), getattr(fn, "__name__", ""), None)
        return found is not None and (found is fn or getattr(found, "__wrapped__", None) is fn)
    except Exception:  # a class whose attribute lookup raises: no hint, the plain message
        return False
