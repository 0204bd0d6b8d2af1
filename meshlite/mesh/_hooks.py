"""The mesh's event hooks: one subscription reaching every service's events (routing
and policies), services registered later included, and the mesh's own events.

A mixin of :class:`meshlite.Mesh`; ``Mesh`` subscribes each service it registers
(:meth:`MeshHooks._hook_service`) and unsubscribes each it retires
(:meth:`MeshHooks._unhook_service`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._events import Event, Hook, check_hook
from ..routing._service import Service

__all__ = ["MeshHooks"]

_log = logging.getLogger("meshlite.events")  # hooks that raise, as every event hook


class MeshHooks:
    """``mesh.add_hook(hook)`` and ``mesh.emit_event(event)`` (mixed into ``Mesh``)."""

    _services: dict[str, Service]
    _extra: list[Service]
    # Each hook of add_hook, and its unsubscribe function on each service by id.
    _hooks: list[tuple[Hook, dict[int, Callable[[], None]]]]

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Subscribe ``hook`` to the events of every service (routing and policies),
        including services registered later; returns the unsubscribe function."""
        check_hook(hook)
        entry = (hook, {id(s): s.add_hook(hook)
                        for s in (*self._services.values(), *self._extra)})
        self._hooks.append(entry)

        def remove() -> None:
            if entry in self._hooks:
                self._hooks.remove(entry)
            for r in list(entry[1].values()):
                r()

        return remove

    def emit_event(self, event: Event) -> None:
        """Deliver a mesh-level event (a config reload, say) to the hooks added with
        :meth:`add_hook`; a hook that raises is logged and ignored."""
        for hook, _ in list(self._hooks):
            try:
                hook(event)
            except Exception:
                _log.exception("meshlite event hook %r raised on %r; ignored", hook, event)

    def _hook_service(self, service: Service) -> None:
        # At registration: a hook added meanwhile is not missed.
        for hook, removers in self._hooks:
            removers[id(service)] = service.add_hook(hook)

    def _unhook_service(self, service: Service) -> None:
        # A retired service: the subscriptions _hook_service made.
        for _, removers in self._hooks:
            remove = removers.pop(id(service), None)
            if remove is not None:
                remove()
