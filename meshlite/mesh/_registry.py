"""What :mod:`meshlite.config` changes a mesh through (not public API): registering
and dropping services, starting a reload's new ones, and letting go of the retired
ones' components, hooks, metrics and connection pools.

A mixin of :class:`meshlite.Mesh`; ``Mesh`` gives the ``_adopt`` family, the
lifecycle the started components and the HTTP pools.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from .._memo import remember
from ..routing._lifecycle import dependency_waves, start_waves
from ..routing._service import Lifecycle, Service
from ._connections import close_async_pools_soon

__all__ = ["MeshRegistry"]

_GONE_KEPT = 256
"""Names a reload removed whose removal a call of the name is told of, at most."""


class MeshRegistry:
    """The services of a mesh, as a reload changes them (mixed into ``Mesh``)."""

    _registering: threading.Lock
    _services: dict[str, Service]
    _targets: dict[str, Any]
    _gone: dict[str, str]
    _extra: list[Service]
    _components: list[Lifecycle]
    _started: list[Lifecycle]
    _state: str
    _http: Any

    def registered(self) -> Mapping[str, Service]:
        """The registered services by name (a read-only view)."""
        return MappingProxyType(self._services)

    def registered_now(self) -> dict[str, Service]:
        """A copy of the registered services by name, taken between two changes of
        the registry (iterating :meth:`registered` while another thread registers
        raises)."""
        with self._registering:
            return dict(self._services)

    def services_now(self) -> list[tuple[str, Service]]:
        """Each registered name and the service calls to it reach now, as
        ``mesh.service(name)`` finds it (an override's while one is active), read at
        once: a reload applied by another thread changes the registry meanwhile
        (iterating it then raised, and a name removed since was no service)."""
        targets = self._targets
        return [(name, target if isinstance(target := targets.get(name), Service)
                 else service) for name, service in tuple(self._services.items())]

    def changing_registry(self) -> threading.Lock:
        """The lock a change of the registry holds: ``mesh.register()`` while it
        checks a name (and the dependencies) and takes it, a reload while it puts
        and drops its services (``config._apply.register``). So a reload and a
        registration on other threads end as if one had run before the other: never
        a name taken twice, nor a service in the registry but not where calls go.
        It is taken last (a reload already holds its turn, ``Managed.turn``), and
        nothing holding it runs user code (hooks, a policy's ``wrap``) or waits for
        another thread, so a hook that registers a service never waits on it."""
        return self._registering

    def _adopt(self, service: Service) -> None:
        raise NotImplementedError  # Mesh's: the mesh's clock, hooks and metrics

    def _adopt_ahead(self, service: Service) -> None:
        raise NotImplementedError  # Mesh's: the clock and metrics, before registering

    def _subscribe(self, service: Service) -> None:
        raise NotImplementedError  # Mesh's: the hooks, when registering

    def _forget(self, service: Service) -> None:
        raise NotImplementedError  # Mesh's: undo _adopt for a retired service

    def adopt(self, service: Service) -> None:
        """Give ``service`` the mesh's clock and metrics ahead of registering it
        (``put_service(service, adopted=True)``, which adds the hooks): a reload
        does this for its new services between turns of the event loop, before the
        registry changes."""
        self._adopt_ahead(service)

    def put_service(self, service: Service, *, replacing: Service | None = None,
                    adopted: bool = False) -> None:
        """Register ``service`` under its name, in place of ``replacing`` (None: of
        whatever has the name), without starting it; ``adopted``: :meth:`adopt` was
        called for it. An override of the name (``mesh.override``) stays in force
        unless it is ``replacing`` itself."""
        if adopted:
            self._subscribe(service)
        else:
            self._adopt(service)
        name = service.name
        self._services[name] = service
        self._gone.pop(name, None)
        if replacing is None or self._targets.get(name) is replacing:
            self._targets[name] = service

    def drop_service(self, service: Service, why: str | None = None) -> None:
        """Take ``service``'s name out of the registry (nothing is stopped: see
        :meth:`release_components`); an override of the name stays in force. ``why``
        (``"the config reload to version 3 removed it"``), when given, is what a call
        of the name is told until the name is registered again."""
        self._services.pop(service.name, None)
        if self._targets.get(service.name) is service:
            del self._targets[service.name]
        if why is not None:  # (bounded as the small caches are: names a config once had)
            remember(self._gone, service.name, why, _GONE_KEPT)

    async def start_services(self, services: Collection[Service]) -> None:
        """Start the components of ``services`` (when open): side by side, up to
        ``START_CONCURRENCY`` services at once (``start_waves``), each after those
        it depends on. Each start is a task of its own, so the event loop serves
        calls between their steps; one after the other, a reload adding 300
        services with a health check each waited for 300 first rounds."""
        if self._state != "open" or not services:
            return
        # Without a dependency among them, one wave: no walk of the registry.
        waves: list[list[Service]] = [list(services)]
        if any(service.depends_on for service in services):
            wanted = {id(service) for service in services}
            waves = [[s for s in wave if id(s) in wanted]
                     for wave in dependency_waves(self._services)]
        await start_waves([[list(s.components) for s in wave if s.components]
                           for wave in waves], self._started)

    def forget_service(self, service: Service) -> bool:
        """Let go of what the mesh keeps for ``service``, out of the registry and
        drained (a reload replaced or removed it, or the override that made it
        ended): the hooks it subscribed to it, and its metrics, whose counts carry
        on in the service registered under its name now (``MeshMetrics.forget``).
        A service that is registered or stands in for one (``mesh.override``) is
        left alone.

        Returns:
            Whether the mesh let go of it (its pools are the caller's to close).
        """
        with self._registering:  # an override taking it up again waits for this
            if self.in_use(service):
                return False
            self._forget(service)
        return True

    def in_use(self, service: Service) -> bool:
        """Whether ``service`` is registered or stands in for one (an active
        ``mesh.override``)."""
        return self._services.get(service.name) is service or any(
            service is extra for extra in self._extra)

    def pools_busy(self, service: Service) -> bool:
        """Whether a connection of ``service``'s HTTP pools is in use (a response body
        still being read, after its attempt ended)."""
        return self._http is not None and self._http.busy(service)

    def release_components(self, service: Service) -> list[Lifecycle]:
        """The started components of ``service``, which the mesh no longer stops: the
        caller does."""
        components = [c for c in service.components if c in self._started]
        for c in components:
            self._started.remove(c)
        return components

    def mark_started(self, component: Lifecycle) -> None:
        """Stop ``component`` (attached and started late) when the mesh closes."""
        self._started.append(component)

    async def close_service_pools(self, service: Service) -> None:
        """Close the HTTP connection pools ``service`` made, if any (a retired
        service)."""
        if self._http is not None:
            await self._http.aclose(service)

    def close_service_pools_now(self, service: Service) -> None:
        """:meth:`close_service_pools` from sync code (a mesh not open, an override
        ending): async pools are closed by a task when an event loop runs here."""
        if self._http is None:
            return
        async_pools, sync_pools = self._http.take(service)
        for pools in sync_pools:
            with contextlib.suppress(Exception):
                pools.close()
        for pools in async_pools:
            close_async_pools_soon(pools)

    async def detach(self, component: Lifecycle) -> None:
        """Stop ``component`` if it runs, and forget it."""
        if component in self._started:
            self._started.remove(component)
            await component.stop()
        if component in self._components:
            self._components.remove(component)

