"""Single-use tickets that let a browser open the WebSocket without its token.

A browser cannot set ``Authorization`` on a WebSocket, and a token in the URL
ends up in logs (uvicorn logs every WebSocket request line). So the page asks
``POST /api/ws-ticket`` (with its bearer token) for a ticket, and offers it as a
WebSocket subprotocol: ``new WebSocket(url, ["meshlite", "meshlite.ticket.<ticket>"])``.
A ticket works once, within :data:`TICKET_SECONDS`, and grants what the token
that asked for it grants. Non-browser clients may send ``Authorization`` instead.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from ..._fork import fork_safe

__all__ = ["MAX_TICKETS", "SUBPROTOCOL", "TICKET_PREFIX", "TICKET_SECONDS", "Tickets"]

TICKET_SECONDS = 30.0
"""How long a ticket stays valid."""

MAX_TICKETS = 256
"""Outstanding tickets kept at most; the oldest is dropped beyond that."""

SUBPROTOCOL = "meshlite"
"""The subprotocol the dashboard accepts a WebSocket with."""

TICKET_PREFIX = "meshlite.ticket."
"""Prefix of the subprotocol carrying a ticket."""


class Tickets:
    """The outstanding tickets of one dashboard.

    Args:
        clock: Monotonic seconds (injected by tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open: dict[str, tuple[float, str]] = {}  # ticket -> (expiry, access)
        self._lock = fork_safe(threading.Lock())

    def issue(self, access: str) -> str:
        """A new ticket granting ``access``."""
        ticket = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            for old, (expiry, _) in list(self._open.items()):
                if expiry <= now:
                    del self._open[old]
            while len(self._open) >= MAX_TICKETS:
                del self._open[next(iter(self._open))]
            self._open[ticket] = (now + TICKET_SECONDS, access)
        return ticket

    def redeem(self, offered: str) -> str | None:
        """The access of the ticket in the ``Sec-WebSocket-Protocol`` value
        ``offered``, used up by this; None when none is valid."""
        for item in offered.split(","):
            item = item.strip()
            if item.startswith(TICKET_PREFIX):
                with self._lock:
                    found = self._open.pop(item[len(TICKET_PREFIX):], None)
                if found is not None and found[0] > self._clock():
                    return found[1]
        return None

    def __len__(self) -> int:
        return len(self._open)
