"""One log line per kind of export failure a minute, not one per batch.

The OTLP exporters log each failed batch (``Failed to export spans batch code:
500``...); a collector that refuses everything would then log a line per batch of
512 spans, a flood at a few thousand spans a second. Each exporter's logger gets a
filter that lets a message through once per :data:`WINDOW_SECONDS` and counts the
ones it held back into the next that passes.
"""

from __future__ import annotations

import logging

from .._throttle import Throttle

__all__ = ["WINDOW_SECONDS", "quiet", "reset"]

WINDOW_SECONDS = 60.0
"""How long a logged export failure keeps the same message quiet."""


class _OncePerWindow(logging.Filter):
    """Passes a message (by its template and level) once per window."""

    def __init__(self) -> None:
        super().__init__()
        self._throttle = Throttle(WINDOW_SECONDS)

    def filter(self, record: logging.LogRecord) -> bool:
        held = self._throttle.passes((str(record.msg), record.levelno))
        if held is None:
            return False
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last minute)"
        return True


_filters: list[_OncePerWindow] = []


def quiet(*loggers: str) -> None:
    """Give each named logger the filter (once; calling it again adds nothing)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OncePerWindow) for f in logger.filters):
            found = _OncePerWindow()
            logger.addFilter(found)
            _filters.append(found)


def reset() -> None:
    """Forget what was logged (tests: each starts with nothing held back)."""
    for found in _filters:
        found._throttle.forget()
