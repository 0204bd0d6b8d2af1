"""Overriding a service for the length of a block: tests put a fake, other backends
or an ``httpx`` transport where a service's calls go.

A mixin of :class:`meshlite.Mesh`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..routing._service import Service, override_service

__all__ = ["MeshOverrides"]


class MeshOverrides:
    """``mesh.override(name, fake)`` (mixed into ``Mesh``)."""

    _services: dict[str, Service]
    _targets: dict[str, Any]
    _extra: list[Service]

    if TYPE_CHECKING:
        def _target(self, name: str) -> Any: ...  # MeshCalls': raises on an unknown name
        def _adopt(self, service: Service) -> None: ...  # Mesh's
        def changing_registry(self) -> threading.Lock: ...  # MeshRegistry's

    @contextlib.contextmanager
    def override(self, name: str, fake: Any) -> Iterator[Any]:
        """Substitute service ``name`` while the block runs (dependency injection for
        tests); nested overrides restore in order.

        ``fake`` may be an ``ml.Service``; backends (an address, a ``Backend``, or a
        list of them) or an object with a ``.url`` (``meshlite.testing.FakeBackend``),
        which become a plain service (round robin, no policies, no ejection); an
        ``httpx`` transport (``httpx.MockTransport``), which HTTP clients of the service
        send through; or any other object, which ``mesh.call`` passes to your function
        in place of a backend.

        Raises:
            ConfigError: no such service.
        """
        self._target(name)
        target = self._as_target(name, fake)
        # Entering and leaving hold the registry's lock, as a reload changing it does:
        # a reload that replaced the service between the exit's read and its write
        # would otherwise have the old one put back where calls go, for good.
        with self.changing_registry():
            self._target(name)  # (a reload may have removed it meanwhile)
            previous = self._targets[name]
            self._targets[name] = target
        try:
            yield target
        finally:
            with self.changing_registry():
                self._restore(name, previous)

    def _restore(self, name: str, previous: Any) -> None:
        current = self._services.get(name)
        if current is None:  # a reload removed the service meanwhile
            self._targets.pop(name, None)
        elif (isinstance(previous, Service) and previous is not current
              and not any(previous is extra for extra in self._extra)):
            self._targets[name] = current  # a reload replaced it: keep the new one
        else:
            self._targets[name] = previous

    def _as_target(self, name: str, fake: Any) -> Any:
        service = override_service(name, fake)
        if service is None:
            return fake
        self._adopt(service)
        self._extra.append(service)
        return service
