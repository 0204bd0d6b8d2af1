"""Refusals for the dashboard's live feed, aggregated: however many requests are
refused, each dashboard tick carries at most one entry per (action, route, status),
with how many refusals and how many distinct clients it stands for."""

from __future__ import annotations

from collections import deque
from typing import Any

from .._errors import MeshliteError, RateLimitedError
from .._printable import printable
from ._routes import INBOUND

__all__ = ["DEFAULT_KEEP", "RefusalFeed", "refusal_kind", "shown_client", "shown_path"]

DEFAULT_KEEP = 50
"""Aggregated entries kept for ``/api/inbound`` (the page's list when it loads)."""

_MAX_KEYS = 64  # (action, route, status) groups per tick; the rest count as one more
_MAX_CLIENTS = 32  # distinct clients remembered per group (the count stops there)
_SHOWN = 3  # client names shown per entry
_PATH_SHOWN = 200  # characters of a path a refusal shows


class RefusalFeed:
    """Counts refusals between two :meth:`drain` calls (the dashboard's ticks).

    Recorded on the event loop that runs the app; a drain from the dashboard swaps
    the pending dict in one assignment, so nothing is counted twice.
    """

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self._pending: dict[tuple[str, str, int], tuple[list[int], dict[str, int]]] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        """The last aggregated entries, newest last."""

    def add(self, action: str, route: str, status: int, client: str) -> None:
        """Count one refusal: ``action`` (``auth_failed``, ``forbidden``,
        ``quota_exhausted``, ``shed``), the route's pattern or path, the status and
        the client's quota key (``ip:...``, ``sub:...``, ``key:<digest>``)."""
        key = (action, route, status)
        group = self._pending.get(key)
        if group is None:
            if len(self._pending) >= _MAX_KEYS:
                key = ("other", "*", 0)
                group = self._pending.get(key)
            if group is None:
                group = self._pending[key] = ([0], {})
        group[0][0] += 1
        clients = group[1]
        if client in clients:
            clients[client] += 1
        elif len(clients) < _MAX_CLIENTS:
            clients[client] = 1

    def drain(self, second: int) -> list[dict[str, Any]]:
        """The entries counted since the last drain, labelled with ``second`` (epoch
        seconds), also kept in :attr:`recent`."""
        pending, self._pending = self._pending, {}
        out = []
        for (action, route, status), (count, clients) in sorted(pending.items()):
            top = sorted(clients, key=lambda c: -clients[c])[:_SHOWN]
            entry = {"second": second, "action": action, "route": route, "status": status,
                     "count": count[0], "clients": len(clients),
                     "clients_capped": len(clients) >= _MAX_CLIENTS, "top": top}
            out.append(entry)
            self.recent.append(entry)
        return out


def shown_path(path: str) -> str:
    """``path`` as a refusal of a request no route matches shows it (in the audit
    log and the dashboard): the client wrote it, so characters that are not
    printable (a newline forging a log line, a terminal escape, a bidi override)
    are escaped as Python writes them, and it is cut at 200 characters."""
    return printable(path, _PATH_SHOWN)


shown_client = shown_path
"""A refused client's quota key as the audit log and the dashboard show it (a
subject a token named or an address a proxy header gave): escaped and cut as
:func:`shown_path` does a path."""


_AUDITED = {401: "auth_failed", 403: "forbidden", 429: "quota_exhausted"}
_SHEDDERS = frozenset({"bulkhead", "adaptive_concurrency"})


def refusal_kind(status: int, error: MeshliteError) -> str | None:
    """What kind of refusal an answer is, for the audit and the dashboard: failed
    credentials, a route's quota, or shed load (a route's concurrency limit or
    adaptive limiter); None for the rest (a dependency's error escaping the app: a
    mesh call's error names its service, a route's names the route)."""
    action = _AUDITED.get(status)
    own = error.service is None or error.service.startswith(INBOUND)
    if status == 429:
        return action if (isinstance(error, RateLimitedError) and own
                          and error.policy == "rate_limit") else None
    if status == 503:
        return "shed" if (own and error.policy in _SHEDDERS) else None
    return action
