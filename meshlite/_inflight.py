"""Calls in flight, kept as the items of a list.

A call appends an item when it starts and pops one when it ends. Both are atomic,
under the GIL and in free-threaded builds, where a counter under a lock would cost
more than the rest of the call's bookkeeping.

Such a list starts with :data:`PAD` placeholder items, which are not calls. CPython
shrinks a list's storage when it falls below half full, so a list going from empty
to one item and back reallocates twice per call (about 50 ns on the project's VM);
one going from ``PAD`` to ``PAD + 1`` items and back never reallocates.
"""

from __future__ import annotations

__all__ = ["PAD", "calls_list", "count"]

PAD = 4
"""Placeholder items at the head of every in-flight list (see the module docstring)."""


def calls_list() -> list[None]:
    """A new, empty in-flight list: append ``None`` when a call starts, pop when it
    ends."""
    return [None] * PAD


def count(calls: list[None]) -> int:
    """The calls in flight in a list made by :func:`calls_list`."""
    return len(calls) - PAD
