"""Whether an event loop has I/O events waiting: FakeClock's one look inside asyncio.

asyncio has no public way to ask a loop "is a socket ready that you have not
handled yet?". Selector loops (the default on every platform but Windows) keep
their ``selectors`` object in the private ``_selector``; a zero-timeout
``select()`` on it answers without consuming anything (asyncio registers its
sockets level-triggered, so the loop still sees every event it would have seen).
Loops without one (uvloop, the Windows proactor) answer ``None``: unknown, and
FakeClock then goes by turns of the loop and real time alone.
"""

from __future__ import annotations

import asyncio
import selectors

__all__ = ["io_pending"]


def io_pending(loop: asyncio.AbstractEventLoop) -> bool | None:
    """True when a socket of ``loop`` is ready and not handled yet; None: cannot tell.

    Call it from the loop's own thread, between callbacks (from a task).
    """
    selector = getattr(loop, "_selector", None)
    if not isinstance(selector, selectors.BaseSelector):
        return None
    try:
        return bool(selector.select(0))
    except (OSError, ValueError):  # a selector closed under us: the loop is going away
        return None
