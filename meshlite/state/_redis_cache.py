"""Cache entries in Redis: Redis keeps the TTL, every process sees invalidations.

Layout under ``<prefix>:cache:<namespace>``:

- ``:e:<function>:<argument digest>``: the encoded value, with a TTL of ``ttl +
  stale_ttl``; the entry is fresh while more than ``stale_ttl`` of it is left, so
  staleness is judged on Redis's clock and never on a caller's.
- ``:fns``: the functions that stored an entry lately, so ``invalidate(args)``
  drops the entry of every function of the namespace, including functions this
  process never called. Its TTL is twice the entries' lifetime, so the index
  outlives every entry it names. On one Redis (or a Sentinel's primary) a store is
  one script that sets the entry, adds its function to the index and renews the
  index's TTL: an index lost meanwhile (another process's ``clear()``, a restart,
  an eviction under ``maxmemory``) names again every function that stores after
  the loss, so ``invalidate`` finds their entries. On a Cluster the two keys live
  in different slots, so a store is one ``SET`` and the index is renewed by a
  process when it stores for a function it last indexed more than one entry
  lifetime ago (an entry stored after the index was lost can then be missed by
  ``invalidate`` until its function is indexed again). What a process remembers of
  those updates stays bounded under functions named per call: past
  ``INDEX_MEMORY`` functions, and again each time their count doubled, those
  updated more than one entry lifetime ago are forgotten (their next store updates
  the index anyway), and of the others the ``INDEX_MEMORY`` updated last are kept
  (one forgotten early costs its next store one update more).
- ``:l:<function>:<argument digest>``: the short cross-process single-flight lock
  (TTL ``cache_lock``).

``<function>`` is ``module.qualname``, behind the codec's name for a codec other
than JSON (``pickle~module.qualname``: :func:`~._codec.codec_tag`), so processes
with different codecs share no entry, lock or index name (one reading another's
entry could decode it into another value, and they would overwrite each other's
entries on every call); ``invalidate`` reads every function from the index, so
it drops the entries of every codec. The argument digest is 64 hexadecimal digits
standing for the call's arguments without showing them (a keyed BLAKE2b, made by the
policy: :mod:`meshlite.policies._cache._keys`), so a key names the namespace and the
function and nothing a caller passed. Every key has a TTL. Entries carry no hash
tag (a digest has no brace), so a namespace spreads over the slots of a Redis
Cluster; on a Cluster every command here names one key (on one node, a store's
script names two), and ``invalidate`` deletes each entry by its full key.

Invalidation deletes entries for the next reader; a value being computed
meanwhile in another process may still be stored after it (as it would be if it
had finished a moment earlier).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

from .._throttle import Throttle, held_back
from ._codec import codec_tag
from ._redis import Script
from ._redis_keys import scan_keys, unlink

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["RedisCache"]

_GET_STALE = Script("""
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}
""")

_STORE = Script("""
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
""")

_INDEX = Script("""
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""")

_UNLOCK = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

_log = logging.getLogger("meshlite.state")

INDEX_MEMORY = 1024
"""Functions a namespace remembers having indexed lately, at most, after it dropped
the oldest (and at most twice as many before it does)."""

DECODE_LOG_INTERVAL = 10.0
"""Seconds between two warnings about entries of one namespace that could not be
decoded: one that every reader meets (written by another program) is logged once,
then with the number of repeats, not once per call."""


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisCache:
    """The shared entries of one cache namespace (see :class:`~meshlite.state.SharedCache`).

    Keys passed in are ``"<function>:<argument digest>"``, as
    :func:`meshlite.policies._cache._shared.shared_keys` builds them.
    """

    __slots__ = ("_base", "_codec", "_fns", "_indexed", "_lock_ms", "_one_node", "_prune_at",
                 "_px", "_stale_ms", "_store", "_tag", "_undecoded", "single_flight")

    def __init__(self, store: RedisStore, base: str, ttl: float, stale_ttl: float) -> None:
        self._store = store
        self._base = base
        self._fns = f"{base}:fns"
        # One node (or a Sentinel's primary) runs a script over two keys: each store
        # indexes its function in the same round trip (see the module doc).
        self._one_node = store._target.kind != "cluster"
        self._codec = store.codec
        self._tag = codec_tag(store.codec)  # "" for JSON
        self._undecoded = Throttle(DECODE_LOG_INTERVAL)
        self._px = max(1, math.ceil((ttl + stale_ttl) * 1000))
        self._indexed: dict[str, float] = {}  # function -> when this process indexed it
        self._prune_at = INDEX_MEMORY  # the size of _indexed at which it is pruned
        self._stale_ms = math.ceil(stale_ttl * 1000)
        self.single_flight = store.cache_lock
        self._lock_ms = 0 if store.cache_lock is None else max(1, math.ceil(
            store.cache_lock * 1000))

    def _decode(self, raw: Any) -> tuple[Any, bool] | None:
        if raw is None:
            return None
        data, left = raw if self._stale_ms else (raw, None)
        try:
            value = self._codec.loads(data)
        except Exception as error:  # written by something else: a miss, not a crash
            repeats = self._undecoded.passes(None)
            if repeats is not None:
                _log.warning("cache %s: an entry could not be decoded with the store's %r "
                             "(%s: %s); treated as a miss%s", self._base, self._codec,
                             type(error).__name__, error, held_back(repeats))
            return None
        return value, left is not None and left <= self._stale_ms

    def get(self, key: str) -> tuple[Any, bool] | None:
        """The value of ``key`` and whether it is stale, or ``None``."""
        entry = f"{self._base}:e:{self._tag}{key}"
        if self._stale_ms:
            return self._decode(self._store.eval(_GET_STALE, 1, entry))
        return self._decode(self._store.command("GET", entry))

    async def aget(self, key: str) -> tuple[Any, bool] | None:
        """The async twin of :meth:`get`."""
        entry = f"{self._base}:e:{self._tag}{key}"
        if self._stale_ms:
            return self._decode(await self._store.aeval(_GET_STALE, 1, entry))
        return self._decode(await self._store.acommand("GET", entry))

    def put(self, key: str, function: str, value: Any) -> None:
        """Store ``value`` under ``key`` for ``ttl + stale_ttl`` seconds.

        Raises:
            TypeError: the codec cannot encode ``value``.
        """
        data, function = self._encode(value), self._tag + function
        entry = f"{self._base}:e:{self._tag}{key}"
        if self._one_node:
            self._store.eval(_STORE, 2, entry, self._fns, data, self._px, function,
                             2 * self._px)
            return
        self._store.command("SET", entry, data, "PX", self._px)
        if self._index_due(function):
            self._store.eval(_INDEX, 1, self._fns, function, 2 * self._px)

    async def aput(self, key: str, function: str, value: Any) -> None:
        """The async twin of :meth:`put`."""
        data, function = self._encode(value), self._tag + function
        entry = f"{self._base}:e:{self._tag}{key}"
        if self._one_node:
            await self._store.aeval(_STORE, 2, entry, self._fns, data, self._px, function,
                                    2 * self._px)
            return
        await self._store.acommand("SET", entry, data, "PX", self._px)
        if self._index_due(function):
            await self._store.aeval(_INDEX, 1, self._fns, function, 2 * self._px)

    def _index_due(self, function: str) -> bool:
        """Whether the index must be renewed for ``function`` (see the module doc)."""
        now = time.monotonic()
        indexed = self._indexed
        if now - indexed.get(function, -math.inf) < self._px / 1000:
            return False
        indexed[function] = now
        if len(indexed) > self._prune_at:
            self._prune_indexed(now)
        return True

    def _prune_indexed(self, now: float) -> None:
        """Forget what saves no index update (see the module doc). A new dict: a
        thread storing meanwhile into the old one only costs an update."""
        lifetime = self._px / 1000
        recent = [(at, fn) for fn, at in list(self._indexed.items()) if now - at < lifetime]
        if len(recent) > INDEX_MEMORY:
            recent = heapq.nlargest(INDEX_MEMORY, recent)
        self._indexed = {fn: at for at, fn in recent}
        self._prune_at = max(INDEX_MEMORY, 2 * len(recent))

    def _encode(self, value: Any) -> bytes:
        try:
            return self._codec.dumps(value)
        except Exception as error:  # whatever the codec raises: the value's, not the call's
            # (json: RecursionError for deep nesting; pickle: AttributeError for a local
            # function, PicklingError; a codec of your own: anything)
            raise TypeError(
                f"Cache: a {type(value).__name__} result cannot be stored with the "
                f"store's {self._codec!r} ({type(error).__name__}: {error}); return values "
                "it can encode, or give the RedisStore a codec that can encode it"
            ) from error

    def lock(self, key: str) -> str | None:
        """Take the single-flight lock of ``key``: a token, or ``None`` if taken."""
        token = uuid.uuid4().hex
        ok = self._store.command("SET", f"{self._base}:l:{self._tag}{key}", token, "NX", "PX",
                                 self._lock_ms)
        return token if ok else None

    async def alock(self, key: str) -> str | None:
        """The async twin of :meth:`lock`."""
        token = uuid.uuid4().hex
        ok = await self._store.acommand("SET", f"{self._base}:l:{self._tag}{key}", token,
                                        "NX", "PX", self._lock_ms)
        return token if ok else None

    def unlock(self, key: str, token: str) -> None:
        """Give the lock of ``key`` back, if ``token`` still holds it."""
        self._store.eval(_UNLOCK, 1, f"{self._base}:l:{self._tag}{key}", token)

    async def aunlock(self, key: str, token: str) -> None:
        """The async twin of :meth:`unlock`."""
        await self._store.aeval(_UNLOCK, 1, f"{self._base}:l:{self._tag}{key}", token)

    def invalidate(self, argkey: str) -> int:
        """Drop the entry of ``argkey`` for every function of the namespace."""
        functions = self._store.command("SMEMBERS", self._fns)
        entry = f"{self._base}:e:"
        return unlink(self._store, [f"{entry}{_text(fn)}:{argkey}" for fn in functions])

    def clear(self) -> int:
        """Drop every key of the namespace (``SCAN`` + ``UNLINK``: O(keys), not for
        the hot path). Returns how many were removed."""
        self._indexed.clear()
        pattern = _glob_escape(self._base) + ":*"
        return sum(unlink(self._store, [k for k in keys if self._owns(_text(k))])
                   for keys in scan_keys(self._store, pattern))

    def _owns(self, key: str) -> bool:
        """Whether ``key``, which starts with ``<base>:``, is this namespace's, not a
        longer one's: namespace ``"users"`` must not clear ``"users:v2"``, whose keys
        match its pattern too."""
        rest = key[len(self._base) + 1:]
        return rest == "fns" or rest.startswith(("e:", "l:"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
