"""The in-process cache store: a TTLCache, the calls in flight, the functions seen.

The calls in flight (single flight: one call per missing key, the others wait for
it) are led and followed by :class:`~._flight.Flights`, which ``CacheStore`` extends
with the entries (what a flight looks at and stores into) and the function index.

Speed: a hit reads the ``TTLCache``'s own dict directly (one C lookup), compares
the entry's ``fresh_until`` itself and moves the key to the LRU end, the very work
of ``TTLCache.__getitem__`` without its three Python frames and three hashings of
the key (the cache-hit benchmark against ``cachetools.cached`` hinges on it). The two
dicts are private to cachetools, so :meth:`CacheStore.reader` checks they are there
and otherwise falls back to ``__getitem__``.

Concurrency: reads take no lock, every write holds ``lock``. A read is one atomic
dict lookup plus one atomic ``move_to_end`` (which raises ``KeyError`` when a writer
just removed the key: the read keeps the value it already has). Writes are
serialised, so the expiry list and the cachetools timer are only touched by one
thread. The one interaction left is eviction (``popitem``), which iterates the
``OrderedDict`` and raises ``RuntimeError`` if a lock-free read reordered it in
between; eviction changes nothing before that point, so writers simply try again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import TTLCache

from ..._clock import Clock
from ._flight import Flights
from ._options import Entry, Key

__all__ = ["CacheStore"]

# The function index (for invalidate) is pruned to the functions that still have
# entries when it grows past this, then past twice its pruned size: amortised O(1)
# even when every call brings a new function object.
_FUNCTIONS_MIN = 64
_WRITE_ATTEMPTS = 8


def _touch_nothing(key: Key) -> None:
    """``TTLCache.__getitem__`` already marked the key used."""


class CacheStore(Flights):
    """Entries, in-flight calls and the functions seen, for one :class:`Cache`."""

    __slots__ = ("_limit", "_now", "_pinned", "_ttl", "data", "functions")

    def __init__(self, maxsize: int, ttl: float, stale_ttl: float, clock: Clock) -> None:
        super().__init__()  # the lock and the flights (dropped in a forked child)
        # Entries are (value, fresh_until); cachetools drops them stale_ttl later.
        self.data: TTLCache[Key, Entry] = TTLCache(
            maxsize, ttl + stale_ttl, timer=clock.monotonic
        )
        self.functions: dict[Any, str | None] = {}  # function -> service, for warm()
        self._pinned: set[Any] = set()
        self._limit = _FUNCTIONS_MIN
        self._ttl = ttl
        self._now = clock.monotonic

    # -- entries (callers of the writers hold the lock) ---------------------------

    def reader(self) -> tuple[Callable[[Key], Entry | None], Callable[[Key], None]]:
        """``(get, touch)`` for the lock-free hit path: ``get(key)`` returns the entry
        or ``None`` without checking its age; ``touch(key)`` marks it recently used and
        raises ``KeyError`` if it is gone."""
        raw = getattr(self.data, "_Cache__data", None)
        links = getattr(self.data, "_TTLCache__links", None)
        if type(raw) is dict and type(links) is OrderedDict:
            return raw.get, links.move_to_end
        return self.peek, _touch_nothing

    def peek(self, key: Key) -> Entry | None:
        try:
            return self.data[key]
        except KeyError:
            return None

    def put(self, key: Key, value: Any, service: str | None) -> None:
        entry = (value, self._now() + self._ttl)
        for _ in range(_WRITE_ATTEMPTS):
            try:
                self.data[key] = entry
                break
            except RuntimeError:  # eviction raced a lock-free read; see the module doc
                continue
        fn = key[0]
        if fn not in self.functions:
            self._index(fn, service)

    def _index(self, fn: Any, service: str | None) -> None:
        self.functions[fn] = service
        if len(self.functions) > self._limit:
            live = {k[0] for k in list(self.data.keys())}
            self.functions = {
                f: s for f, s in self.functions.items() if f in live or f in self._pinned
            }
            self._limit = max(_FUNCTIONS_MIN, 2 * len(self.functions))

    def remember(self, fn: Any, service: str | None) -> None:
        """Note a function a Cache with a store served (its entries live there), so
        warm() knows it as it knows the ones with entries here."""
        if fn not in self.functions:
            with self.lock:
                self._index(fn, service)

    def pin(self, fn: Any) -> None:
        """Remember a function the Cache decorates, so warm() knows it before any call."""
        with self.lock:
            self._pinned.add(fn)
            self.functions.setdefault(fn, None)

    def invalidate(self, argkey: Hashable) -> int:
        removed = 0
        with self.lock:
            # Every function in flight: one whose first call (or first since its
            # entries went) is still running is not in `functions` yet.
            self.keep_out(argkey)
            for fn in self.functions:
                try:
                    self.data.pop((fn, argkey))
                    removed += 1
                except KeyError:
                    pass
        return removed

    def clear(self) -> None:
        with self.lock:
            while True:
                try:
                    self.data.clear()
                    break
                except RuntimeError:  # each attempt evicts some; see the module doc
                    continue
            self.keep_out_all()
            self.functions = {f: s for f, s in self.functions.items() if f in self._pinned}

    def size(self) -> int:
        with self.lock:
            return len(self.data)
