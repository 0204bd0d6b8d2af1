"""Mesh: the service registry, its lifecycle, overrides for tests, and the entry
points of every mesh call (``call``, ``call_sync``, ``http``, ``http_sync``).

The registry is here; the other roles are mixins of their own modules: calls
(``_calls``), opening and closing (``_lifecycle``), what a config reload changes the
registry through (``_registry``), overrides (``_overrides``), the HTTP clients
(``_clients``), event hooks (``_hooks``) and what operators use (``_operations``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Unpack

from .._arguments import explained
from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigError
from .._events import Hook
from .._fork import after_fork_in_child, fork_safe
from .._inbound._naming import check_name, default_name
from .._inflight import calls_list
from .._policy import AsyncHandler, Handler
from .._validate import fail, non_negative, optional_clock
from ..observability._host import HostMonitor
from ..observability._mesh_metrics import MeshMetrics
from ..routing._lifecycle import LoopThread, dependency_order, start_all
from ..routing._service import Lifecycle, Service, check_component
from ._calls import MeshCalls
from ._clients import MeshClients
from ._hooks import MeshHooks
from ._lifecycle import MeshLifecycle
from ._operations import MeshOperations
from ._overrides import MeshOverrides
from ._registry import MeshRegistry

if TYPE_CHECKING:
    from .._inbound._middleware import MeshMiddleware
    from ..config._mesh_config import ConfigOptions
    from ..observability._dashboard import Alerts
    from ..routing._snapshot import ServiceHealth, ServiceSnapshot

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "Mesh"]

DEFAULT_DRAIN_TIMEOUT = 30.0
"""Seconds closing the mesh waits for calls in flight to finish."""


@explained
class Mesh(MeshOperations, MeshOverrides, MeshClients, MeshCalls, MeshRegistry,
           MeshLifecycle, MeshHooks):
    """The service registry: where every call finds its service, its pipeline and a
    backend, and what starts and stops health checks and other components.

    ``async with mesh`` (or ``with mesh``) starts each service's components (health
    checks, attached discovery...) in dependency order and stops them in reverse;
    closing waits up to ``drain_timeout`` for calls in flight and then refuses new
    ones (``MeshClosedError``) until the mesh is opened again. Calls also work on a
    mesh that was never opened (without active health checks).

    Args:
        services: The services, each registered under its name.
        drain_timeout: Seconds closing waits for calls in flight, >= 0.
        clock: Clock given to services that have none of their own (tests): their
            routing, health checks and discovery run on it, not the policies of their
            pipelines, which run on the clock each was built with.
        metrics: Record metrics in ``mesh.metrics`` (served as Prometheus text by
            ``ml.telemetry.prometheus_app(mesh)``, ``start_http_server(mesh)`` and the
            dashboard's ``/metrics``); ``False`` records nothing and saves the
            recording cost of each call (docs/metrics.md, "Cost").
        name: This mesh's own service name, sent to the services it calls (the
            ``x-meshlite-caller`` header) so their dashboards draw the edge; by
            default the name given to ``ml.telemetry.configure()``, else
            ``OTEL_SERVICE_NAME``, else none.

    Raises:
        ConfigError: two services with one name, an unknown dependency, or a
            dependency cycle (each named).

    Example::

        mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:8001"])])
        async with mesh:
            r = await mesh.http("users").get("/users/1")
    """

    def __init__(self, services: Iterable[Service] = (), *,
                 drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
                 clock: Clock | None = None, metrics: bool = True,
                 name: str | None = None) -> None:
        if not isinstance(metrics, bool):
            fail("Mesh", "metrics", metrics, "True or False")
        self._name = check_name(name)
        self.inbound: MeshMiddleware | None = None
        """The ``meshlite.asgi.MeshMiddleware`` guarding this service, if one was given
        this mesh (the dashboard draws its callers)."""
        self.drain_timeout = non_negative("Mesh", "drain_timeout", drain_timeout)
        clock = optional_clock("Mesh", clock)
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        # Held while the registry changes: mesh.register() checks a name and its
        # dependencies and takes it, a reload applies its services (one at a time,
        # see MeshRegistry.changing_registry).
        self._registering = fork_safe(threading.Lock())
        self._services: dict[str, Service] = {}
        self._targets: dict[str, Any] = {}  # name -> Service, or an override's fake
        # name -> what removed it (a config reload), until the name is registered again
        self._gone: dict[str, str] = {}
        self._extra: list[Service] = []  # services made for overrides (own pools)
        # name -> the overrides of it whose blocks run, oldest first ([target] each)
        self._overriding: dict[str, list[list[Any]]] = {}
        # Each hook of add_hook, and its unsubscribe function on each service by id.
        self._hooks: list[tuple[Hook, dict[int, Callable[[], None]]]] = []
        self._components: list[Lifecycle] = []
        self._started: list[Lifecycle] = []
        self._thread: LoopThread | None = None
        self._calls = calls_list()  # calls to an override's fake in flight (see _enter)
        # Every service the mesh adopted and has not let go of (registered, an
        # override's, or retired and draining): closing counts their calls in flight.
        self._live: dict[Service, None] = {}
        self._state = "idle"  # idle -> open -> closing -> closed -> open ...
        self._refusing = False  # closing or closed (set with the state: _set_state)
        self.config_version = 0
        """Incremented by the config loader on each applied reload (of this process)."""
        self.config_sha256: str | None = None
        """The SHA-256 of the config file's text in force (set by the config loader)."""
        self.reload_errors: list[ConfigError] = []
        """Reloads the config loader rejected (the latest), each its ``ConfigError``."""
        self.reload_failures = 0
        """How many reloads the config loader rejected, in all (of this process)."""
        self.metrics: MeshMetrics | None = None
        """This mesh's metrics registry (``None`` when made with ``metrics=False``)."""
        self._alerts: Alerts | None = None
        # metrics.recorders / arecorders, read per call (None: no metrics)
        self._recorders: dict[Service, tuple[Handler, Handler]] | None = None
        self._arecorders: dict[Service, tuple[AsyncHandler, AsyncHandler]] | None = None
        for service in services:
            self._add(service)
        dependency_order(self._services)
        if metrics:
            self.metrics = MeshMetrics(self)
            self._recorders = self.metrics.recorders
            self._arecorders = self.metrics.arecorders
            if self.metrics.shared is not None:  # several workers: write this one's file
                self.attach(self.metrics.shared)
        # Alert rules are evaluated while the mesh is open (one worker per host).
        self._host = HostMonitor(self)
        self.attach(self._host)
        after_fork_in_child(self)  # a mesh open in the parent is not open in a child

    @property
    def host_monitor(self) -> HostMonitor:
        """What evaluates the mesh's alert rules while it is open, and decides which
        worker of the host leads (serves the dashboard, notifies); not public API."""
        return self._host

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **kwargs: Unpack[ConfigOptions]
                    ) -> Mesh:
        """Build a mesh from a YAML or TOML file (see :mod:`meshlite.config`).

        Delegates to ``meshlite.config.mesh_from_config(path, **kwargs)``: its keyword
        arguments (``environ``, ``profile``, ``hot_reload``, ``dashboard``, ``clock``)
        and those of ``ml.Mesh`` (``drain_timeout``, ``metrics``, ``name``).
        """
        from ..config._mesh_config import mesh_from_config

        return mesh_from_config(path, **kwargs)

    # -- registry -------------------------------------------------------------

    def _add(self, service: Service, *, dependencies: bool = False) -> None:
        if not isinstance(service, Service):
            fail("Mesh", "services", service, "ml.Service objects")
        with self._registering:  # two threads registering one name: the second raises
            if dependencies:  # checked with the name: a reload may be removing one
                self._check_dependencies(service)
            if service.name in self._services:
                raise ConfigError(f"Mesh: two services are named {service.name!r}; names "
                                  "must be unique", policy="mesh")
            self._claim_if_open(service)  # no other open mesh may have it
            self._adopt(service)
            self._services[service.name] = service
            self._targets[service.name] = service
            self._gone.pop(service.name, None)

    def _check_dependencies(self, service: Service) -> None:
        missing = [d for d in getattr(service, "depends_on", ()) if d not in self._services]
        if missing:
            known = ", ".join(sorted(self._services)) or "none"
            raise ConfigError(f"Mesh: service {service.name!r} depends on {missing[0]!r}, "
                              f"which is not registered (known services: {known})",
                              policy="mesh")

    def register(self, service: Service) -> Service:
        """Add ``service``; its dependencies must already be registered. On a mesh
        opened with ``with mesh`` its components start at once; on one opened with
        ``async with mesh`` use :meth:`aregister`.

        Raises:
            ConfigError: a duplicate name, an unknown dependency, a service with
                components registered on an open async mesh, or (the mesh open) a
                service with components another open mesh has.
        """
        late = self._state == "open" and bool(getattr(service, "components", ()))
        thread = self._thread  # read once: a close on another thread drops it
        if late and thread is None:
            raise ConfigError("Mesh.register: the mesh is open on an event loop; use "
                              "await mesh.aregister(service) so its components start",
                              policy="mesh")
        self._add(service, dependencies=True)
        if late and thread is not None:
            thread.run(start_all(service.components, self._started))
        return service

    async def aregister(self, service: Service) -> Service:
        """Like :meth:`register`, starting the service's components on this loop when
        the mesh is open."""
        self._add(service, dependencies=True)
        if self._state == "open":
            if self._thread is not None:
                await self._thread.arun(start_all(service.components, self._started))
            else:
                await start_all(service.components, self._started)
        return service

    def attach(self, component: Lifecycle) -> None:
        """Have the mesh start ``component`` (``async start()``/``async stop()``) after
        all services' components, and stop it before them."""
        self._components.append(check_component("Mesh", component))

    @property
    def services(self) -> tuple[Service, ...]:
        """The registered services, in registration order."""
        return tuple(self._services.values())

    def service(self, name: str) -> Service:
        """The service called ``name`` (an override's service while one is active).

        Raises:
            ConfigError: no such service (the message lists the known ones).
        """
        target = self._target(name)
        return target if isinstance(target, Service) else self._services[name]

    # -- state ---------------------------------------------------------------

    def health(self) -> dict[str, ServiceHealth]:
        """Each service's health, from cached state (no I/O)."""
        from ..routing._snapshot import health_of

        return {name: health_of(service) for name, service in self.services_now()}

    def snapshot(self) -> dict[str, ServiceSnapshot]:
        """Each service's numbers: requests, errors, latency percentiles, in flight,
        ejection, health and breaker state, per backend and in total."""
        from ..routing._snapshot import snapshot_of

        return {name: snapshot_of(service) for name, service in self.services_now()}

    @property
    def in_flight(self) -> int:
        """Mesh calls running now."""
        return self._in_flight

    @property
    def name(self) -> str | None:
        """This mesh's own service name (see the ``name`` argument)."""
        return self._name if self._name is not None else default_name()

    def _adopt(self, service: Service) -> None:
        self._adopt_ahead(service)
        self._subscribe(service)

    def _adopt_ahead(self, service: Service) -> None:
        # What may be done before the service is registered (MeshLifecycle.adopt).
        service._use_clock(self.clock)
        service.caller = self._caller()
        self._live[service] = None
        if self.metrics is not None:
            self.metrics.adopt(service)

    def _subscribe(self, service: Service) -> None:
        self._hook_service(service)
        if self._api_audit is not None:
            self._api_audit.watch(service)

    def _forget(self, service: Service) -> None:
        # A retired service (MeshRegistry.forget_service): what _adopt gave it.
        self._live.pop(service, None)
        self._unhook_service(service)
        if self._api_audit is not None:
            self._api_audit.forget(service)
        if self.metrics is not None:
            self.metrics.forget(service)

    def _caller(self) -> Callable[[], str | None]:
        # What a service asks for the name each routed attempt carries (the name
        # property's answer): an unnamed mesh's services ask default_name itself, a
        # call less on every attempt; a given name never changes.
        name = self._name
        return default_name if name is None else lambda: name

    def __repr__(self) -> str:
        return f"Mesh({list(self._services)!r}, state={self._state!r})"

