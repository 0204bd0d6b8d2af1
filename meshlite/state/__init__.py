"""Shared state: where policies keep what several processes must agree on.

By default every policy keeps its state in process memory. Give a policy a store
(``store=``) and its decisions are taken in the store instead, atomically, so all
replicas of a service share one rate limit, one breaker and one cache::

    from meshlite.state import RedisStore

    redis = RedisStore("redis://cache.internal:6379/0", on_error="local")
    limit = ml.RateLimit(rate=100.0, store=redis, name="users-api")
    breaker = ml.CircuitBreaker(name="users", store=redis)
    cache = ml.Cache(ttl=30.0, store=redis)

:class:`MemoryStore` shares state by name between the policies of one process
(and stands in for Redis in tests). When a store does not answer within its
``timeout``, each decision falls back
as ``on_error`` says (``"local"``: the policy's in-process state; ``"allow"``;
``"deny"``; ``"raise"``), emits :class:`StoreFallback`, and the store is tried
again after ``retry_interval``. See ``docs/scaling.md``.

Importing this module does not import redis-py; making a :class:`RedisStore` does.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._base import (
    OnError,
    SharedCache,
    SharedCircuit,
    SharedGcra,
    Store,
    StoreFallback,
    StoreRecovered,
    StoreUnavailable,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from ._codec import Codec, JsonCodec
    from ._memory import DEFAULT_MEMORY_MAX_KEYS, MemoryStore
    from ._redis import DEFAULT_PREFIX, DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, RedisStore
    from ._redis_conn import StoreBusyError
    from ._redis_ops import StoreReplyError

# The stores load on first use: policies import this package for the protocol in
# _base, and that must not cost every `import meshlite` the stores' imports.
_LAZY = {
    "Codec": "._codec",
    "JsonCodec": "._codec",
    "DEFAULT_MEMORY_MAX_KEYS": "._memory",
    "MemoryStore": "._memory",
    "DEFAULT_PREFIX": "._redis",
    "DEFAULT_RETRY_INTERVAL": "._redis",
    "DEFAULT_TIMEOUT": "._redis",
    "RedisStore": "._redis",
    "StoreBusyError": "._redis_conn",
    "StoreReplyError": "._redis_ops",
}


if not TYPE_CHECKING:  # type checkers see the imports above, and no other name
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = [
    "Store",
    "RedisStore",
    "MemoryStore",
    "OnError",
    "StoreUnavailableError",
    "StoreReplyError",
    "StoreBusyError",
    "StoreUnavailable",
    "StoreRecovered",
    "StoreFallback",
    "SharedGcra",
    "SharedCache",
    "SharedCircuit",
    "Codec",
    "JsonCodec",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "DEFAULT_RETRY_INTERVAL",
    "DEFAULT_MEMORY_MAX_KEYS",
]
