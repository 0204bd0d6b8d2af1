"""What the pytest plugin's fixtures hand to tests: a FakeBackend factory, a Mesh
factory, and chaos (fault injection into a service). Plain classes, usable without
pytest; :mod:`meshlite.testing._plugin` wraps them in fixtures and closes them."""

from __future__ import annotations

import random as _random
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

from .._arguments import explained
from .._clock import Clock
from .._errors import ConfigError
from .._events import Event
from ..mesh._mesh import Mesh
from ..policies._fault import ErrorSpec, FaultInjected, FaultInjection, LatencySpec
from ..routing._service import Service
from ._backend import FakeBackend

__all__ = [
    "DEFAULT_TEST_DRAIN_TIMEOUT",
    "BackendFactory",
    "Chaos",
    "InjectedFault",
    "MeshFactory",
]

DEFAULT_TEST_DRAIN_TIMEOUT = 1.0
"""``drain_timeout`` of meshes made by the ``mesh`` fixture unless given: closing a
test's mesh never waits the library default of 30 s for calls a test left running."""

_MISSING: Any = object()


class BackendFactory:
    """``fake_backend(...)``: make and start a :class:`FakeBackend` (on its own
    thread, so it serves sync and async tests alike); :meth:`close` stops them all.

    Calling it takes the arguments of :class:`FakeBackend` and returns the running
    backend.
    """

    def __init__(self) -> None:
        self.backends: list[FakeBackend] = []
        """Every backend made and not stopped by :meth:`close` yet, in order."""

    def __call__(self, latency: float | Callable[[], float] = 0.0, error_rate: float = 0.0,
                 error_status: int = 503, seed: int | None = None, *, port: int = 0,
                 **behaviour: Any) -> FakeBackend:
        """Start a FakeBackend with these settings and return it.

        Raises:
            ConfigError: a bad behaviour or port.
            OSError: the port cannot be listened on.
        """
        backend = FakeBackend(latency, error_rate, error_status, seed, port=port, **behaviour)
        backend.start_sync()
        self.backends.append(backend)
        return backend

    def close(self) -> None:
        """Stop every backend (joining its thread); the first error is re-raised
        after all were stopped."""
        errors: list[BaseException] = []
        while self.backends:
            try:
                self.backends.pop().stop_sync()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]


class MeshFactory:
    """``mesh(*services, **options)``: a new, isolated :class:`meshlite.Mesh`, closed
    when the test ends.

    The mesh is returned unopened: calls work at once; open it (``with m:``,
    ``async with m:``, ``await m.start()``) when the test needs health checks or
    other components. Whatever state it is left in, the fixture closes it.
    """

    def __init__(self) -> None:
        self.meshes: list[Mesh] = []
        """Every mesh made and not closed yet, in order."""

    def __call__(self, *services: Service | Iterable[Service], **options: Any) -> Mesh:
        """A mesh of ``services`` (given one by one or as one list); ``options`` are
        :class:`meshlite.Mesh`'s (``drain_timeout`` defaults to
        :data:`DEFAULT_TEST_DRAIN_TIMEOUT`).

        Raises:
            ConfigError: as ``ml.Mesh(...)`` does.
        """
        flat: list[Any] = []
        for item in services:
            flat.extend(item if isinstance(item, list | tuple) else (item,))
        options.setdefault("drain_timeout", DEFAULT_TEST_DRAIN_TIMEOUT)
        mesh = Mesh(flat, **options)
        self.meshes.append(mesh)
        return mesh

    async def aclose(self) -> None:
        """Close every mesh on the running loop (those opened with ``with mesh``,
        which run their own loop thread, synchronously); the first error is
        re-raised after all were closed."""
        errors: list[BaseException] = []
        while self.meshes:
            mesh = self.meshes.pop()
            try:
                if mesh._thread is not None:
                    mesh.close()
                else:
                    await mesh.aclose()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Close every mesh synchronously; the first error is re-raised after all
        were closed."""
        errors: list[BaseException] = []
        while self.meshes:
            try:
                self.meshes.pop().close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]


class InjectedFault:
    """One fault injected by ``chaos(...)`` into a service: a
    :class:`meshlite.FaultInjection` run between the service's pipeline and its
    routing, on every attempt, until removed (at the latest when the test ends).

    ``with chaos(...):`` limits it to the block.
    """

    def __init__(self, service: Service, policy: FaultInjection, remove: Callable[[], None],
                 ) -> None:
        self.service = service
        """The service the fault is injected into."""
        self.policy = policy
        """The :class:`meshlite.FaultInjection` doing it."""
        self.enabled = True
        """Set to False to pause the fault (calls pass untouched), True to resume."""
        self._remove = remove
        self._count = 0
        self._lock = threading.Lock()
        self.active = True
        """Whether the fault is still injected (False once removed)."""

    @property
    def injected(self) -> int:
        """How many calls (attempts) got the fault so far."""
        return self._count

    def _counted(self, event: Event) -> None:
        if isinstance(event, FaultInjected):
            with self._lock:
                self._count += 1

    def remove(self) -> None:
        """Take the fault out of the service (later calls run as before)."""
        if self.active:
            self.active = False
            self._remove()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return (f"InjectedFault({self.service.name!r}, {self.policy!r}, {state}, "
                f"injected={self._count})")


class _ServiceClock:
    """The clock of ``service`` when it is read: a service injected before it joins a
    mesh takes the mesh's clock then (a ``FakeClock`` makes injected latency free)."""

    __slots__ = ("_service",)

    def __init__(self, service: Service) -> None:
        self._service = service

    def monotonic(self) -> float:
        return self._service.clock.monotonic()

    def sleep(self, seconds: float) -> None:
        self._service.clock.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await self._service.clock.asleep(seconds)


@explained
class Chaos:
    """``chaos(service, rate=1.0, error=None, latency=None, result=...)``: inject a
    :class:`meshlite.FaultInjection` into a service for the rest of the test.

    Args:
        meshes: Where names are looked up when no ``mesh=`` is given (the plugin
            passes the meshes of the ``mesh`` fixture).
    """

    def __init__(self, meshes: Callable[[], Sequence[Mesh]] = tuple) -> None:
        self._meshes = meshes
        self.faults: list[InjectedFault] = []
        """Every fault injected, in order (removed ones included)."""

    def __call__(self, service: str | Service, rate: float = 1.0,
                 error: ErrorSpec | None = None, latency: LatencySpec | None = None,
                 result: Any = _MISSING, *, mesh: Mesh | None = None, seed: int | None = None,
                 clock: Clock | None = None) -> InjectedFault:
        """Inject a fault into ``service`` (a name, or an ``ml.Service``).

        Args:
            service: The service, or its name in ``mesh`` (default: the one mesh
                of the ``mesh`` fixture that has it).
            rate: Share of attempts that get the fault, in [0, 1] (default all).
            error: What faulted attempts raise (as ``FaultInjection``'s ``error``;
                default ``ConnectionError`` unless ``latency`` or ``result`` given).
            latency: Seconds added to faulted attempts (or a function drawing them).
            result: An answer faulted attempts return instead of calling.
            mesh: The mesh to find the service in.
            seed: Seed of the draws, for repeatable tests.
            clock: Clock the latency is slept on (default: the service's clock). A
                pipeline's ``Timeout`` cuts the latency only if it runs on the same
                clock: a mesh's clock is not given to the policies.

        Returns:
            The :class:`InjectedFault` (``.injected`` counts faults, ``.enabled``
            pauses it, ``.remove()`` ends it).

        Raises:
            ConfigError: an unknown service, a name found in several meshes, or a bad
                ``FaultInjection`` option.
        """
        target = self._resolve(service, mesh)
        fault: InjectedFault | None = None
        answer = {} if result is _MISSING else {"result": result}
        policy = FaultInjection(
            rate, error, latency, **answer,
            enabled=lambda: fault is not None and fault.enabled,
            clock=clock or _ServiceClock(target),
            random=None if seed is None else _random.Random(seed))
        remove = target.inject(policy)
        fault = InjectedFault(target, policy, remove)
        policy.hooks.add(fault._counted)
        self.faults.append(fault)
        return fault

    def _resolve(self, service: str | Service, mesh: Mesh | None) -> Service:
        if isinstance(service, Service):
            return service
        if not isinstance(service, str):
            raise ConfigError(f"chaos: service must be a service name or an ml.Service, "
                              f"got {service!r}", policy="chaos")
        if mesh is not None:
            return mesh.service(service)  # ConfigError names the known services
        found = [m for m in self._meshes() if service in {s.name for s in m.services}]
        if len(found) == 1:
            return found[0].service(service)
        if not found:
            raise ConfigError(
                f"chaos: no mesh made by the `mesh` fixture has a service {service!r}; "
                "pass mesh=your_mesh, or the ml.Service itself", policy="chaos")
        raise ConfigError(f"chaos: {len(found)} meshes have a service {service!r}; pass "
                          "mesh= to say which", policy="chaos")

    def clear(self) -> None:
        """Remove every fault injected so far."""
        for fault in self.faults:
            fault.remove()
