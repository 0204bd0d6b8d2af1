"""Text an outside party wrote, made safe to show in a log line, an audit record or
the dashboard: one implementation for every place that shows such text."""

from __future__ import annotations

__all__ = ["MAX_ADDRESS", "MAX_DESCRIBED", "described", "printable"]

MAX_ADDRESS = 64
"""Characters of a client address kept (an IPv6 address with a zone fits)."""

MAX_DESCRIBED = 200
"""Characters of an error's message :func:`described` keeps."""


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


def described(error: BaseException, limit: int = MAX_DESCRIBED) -> str:
    """``error`` as a note, a log line or an event's reason shows it, every error
    alike: its type's name and its message, ``ConnectionError('reset by peer')``, the
    message cut at ``limit`` characters (``...`` marks the cut) and escaped as a repr
    escapes it. An error's own repr is not it: aiohttp's connection errors show their
    connection key there (eight fields) and not their message, which names the host,
    the cause and, for a mesh's attempt, the service and backend."""
    name = type(error).__name__
    args = error.args
    if len(args) == 1 and isinstance(args[0], str):
        text = args[0]  # (as the repr shows it: a KeyError's str quotes it again)
    else:
        try:
            text = str(error)
        except Exception:  # a user's error with a broken __str__
            return f"{name}(...)"
    if not text:
        return f"{name}()"
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{name}({text!r})"
