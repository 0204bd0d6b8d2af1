"""Cache: a TTL cache of results with single flight and stale-while-revalidate.

``_options`` holds the options, defaults, events and cache keys; ``_store`` the
entries (the concurrency lives there) and ``_flight`` the calls in flight (single
flight); ``_policy`` the ``Cache`` policy itself; ``_handlers`` its per-call paths;
``_shared`` (and its async twin ``_ashared``) the paths of a cache whose entries
live in a store, and ``_keys`` their keys there (no argument readable in them).
"""

from ._options import (
    DEFAULT_CACHE_MAXSIZE,
    DEFAULT_CACHE_STALE_TTL,
    CacheHit,
    CacheMiss,
    CacheOptions,
    CacheRefreshFailed,
    CacheStaleServed,
    KeyFunction,
)
from ._policy import Cache

__all__ = [
    "DEFAULT_CACHE_MAXSIZE",
    "DEFAULT_CACHE_STALE_TTL",
    "Cache",
    "CacheHit",
    "CacheMiss",
    "CacheOptions",
    "CacheRefreshFailed",
    "CacheStaleServed",
    "KeyFunction",
]
