"""The one policy of the small caches on a request's path (merged and joined URLs,
built headers, header sets, pools, signature plans; the dashboard's rows too): a
``dict`` of at most a given number of entries, emptied when full. The wires' timeout
caches follow it inline (their comment says why).

Each cache is a plain ``dict`` its owner reads with ``get`` (or ``[]``), so the hit
path, the one nearly every request takes, costs what a dict look-up costs; only a
miss calls :func:`remember`. A ``dict`` subclass with ``__missing__`` would cost more
on every hit (CPython specialises look-ups and ``dict.get`` calls on exact dicts
only: a ``get`` and a ``[]`` ran about 360 more instructions on a subclass, callgrind,
Python 3.11), and evicting the least recently used entry would cost a reordering on
every hit. Emptying a full cache is O(1) amortised and needs no bookkeeping; what
such a cache holds is cheap to build again. Taking the oldest entry out instead
(``next(iter(cache))``) would slow with each removal, as a dict's iteration walks
past the slots its deletions leave until it is resized.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["remember"]

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, most: int) -> V:
    """Store ``value`` under ``key`` in ``cache`` (a miss) and return it.

    Args:
        cache: The cache: a plain dict its owner reads directly.
        key: The key that missed (or whose entry is stale: it is replaced).
        value: What was built for ``key``, built once by the caller.
        most: The bound: a cache already holding ``most`` entries is emptied first,
            so it never holds more.

    Returns:
        ``value``.
    """
    if len(cache) >= most:
        cache.clear()
    cache[key] = value
    return value
