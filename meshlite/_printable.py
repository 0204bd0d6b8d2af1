"""Text an outside party wrote, made safe to show in a log line, an audit record or
the dashboard: one implementation for every place that shows such text."""

from __future__ import annotations

__all__ = ["MAX_ADDRESS", "printable"]

MAX_ADDRESS = 64
"""Characters of a client address kept (an IPv6 address with a zone fits)."""


def printable(text: str, limit: int) -> str:
    """``text`` with every character that is not printable (a newline forging a log
    line, a terminal escape such as ``\\x1b`` or the C1 ``\\x9b``, a bidi override)
    escaped as Python writes it, and cut at ``limit`` characters (``...`` marks the
    cut). Text that needs neither comes back as it is, at the cost of one check."""
    if len(text) <= limit and text.isprintable():
        return text
    escaped = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[:limit])
    if len(text) > limit or len(escaped) > limit:
        return escaped[:limit] + "..."
    return escaped
