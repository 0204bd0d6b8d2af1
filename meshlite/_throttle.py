"""One log record per kind and window: the first of a kind passes, the repeats
within the window are counted, and the next to pass says how many there were."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from ._fork import fork_safe

__all__ = ["Throttle", "held_back"]


def held_back(held: int) -> str:
    """What a record that passed adds for the ``held`` of its kind held back before it
    (:meth:`Throttle.passes`): nothing for the first."""
    return f" ({held} more since the last such warning)" if held else ""


class Throttle:
    """Whether a record of one kind may be written now (thread-safe).

    Args:
        window: Seconds during which repeats of a kind are held back.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._lock = fork_safe(threading.Lock())
        self._seen: dict[Hashable, tuple[float, int]] = {}

    def passes(self, kind: Hashable) -> int | None:
        """None to hold a record of ``kind`` back; else how many were held back
        since the last one passed (0 for the first)."""
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(kind, (-self.window, 0))
            if now - last < self.window:
                self._seen[kind] = (last, held + 1)
                return None
            self._seen[kind] = (now, 0)
        return held

    def forget(self) -> None:
        """Forget every kind seen (the next of each passes)."""
        with self._lock:
            self._seen.clear()
