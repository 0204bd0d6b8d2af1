"""The events of the routes' policies, delivered where the mesh's own go.

A route's quota, concurrency limit or timeout is an ordinary policy emitting
ordinary events (``CallRejected``, ``StoreFallback`` when its Redis store does not
answer...), with ``service`` the route's name (``inbound:/orders/{id}``). They are
not in any of the mesh's services, so the middleware subscribes this relay to them:
each event is counted by the mesh's metrics feed (``meshlite_rejections_total``,
``meshlite_store_fallbacks_total``...) and handed to the hooks added with
``mesh.add_hook``, as the events of the mesh's services are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._events import Event
from ._routes import INBOUND, RouteTable

__all__ = ["EventRelay"]


class EventRelay:
    """Subscribed to the policies of a route table (the latest one followed).

    Args:
        mesh: The middleware's mesh (its ``metrics`` feed, may be None, and
            ``emit_event``).
    """

    __slots__ = ("_names", "_removers", "mesh")

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self._removers: list[Callable[[], None]] = []
        self._names: frozenset[str] = frozenset()  # the routes' names followed

    def __call__(self, event: Event, /) -> None:
        """Count ``event`` in the mesh's metrics and deliver it to the mesh's hooks."""
        metrics = self.mesh.metrics
        if metrics is not None:
            metrics.feed(event)
        self.mesh.emit_event(event)

    def follow(self, table: RouteTable) -> None:
        """Relay the events of ``table``'s policies (and no longer those of the
        table followed before); the series the mesh's metrics counted for the
        routes no longer in the table go (no event of theirs comes any more)."""
        for remove in self._removers:
            remove()
        self._removers = [policy.hooks.add(self) for policy in table.policies()]
        names = frozenset(INBOUND + r.label for r in table.routes if r.label is not None)
        gone, self._names = self._names - names, names
        metrics = self.mesh.metrics
        if metrics is not None:
            for name in gone:
                metrics.counters.drop(name)
