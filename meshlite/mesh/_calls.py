"""A mesh's calls: finding what a service name reaches, and running a call through
the service's pipeline and routing as the current call.

A mixin of :class:`meshlite.Mesh`; ``mesh.call``, ``mesh.call_sync`` and the HTTP
clients (through :meth:`MeshCalls.target` and :meth:`MeshCalls.dispatch`) come here
on every call.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast, overload

from .._context import CallContext, _get_current, _reset_current, _set_current
from .._context import operation_of as _operation_of
from .._errors import ConfigError
from .._inflight import count
from .._pipeline import NOT_RUN, async_called_sync, refuse_generator
from .._policy import AsyncHandler, Handler
from ..observability._mesh_metrics import MeshMetrics
from ..routing._events import MeshClosedError
from ..routing._service import Service

if TYPE_CHECKING:
    from ..routing._backend import Backend

__all__ = ["MeshCalls"]

P = ParamSpec("P")
T = TypeVar("T")


class MeshCalls:
    """Routing calls to services, counting them in flight (mixed into ``Mesh``)."""

    metrics: MeshMetrics | None
    _services: dict[str, Service]
    _targets: dict[str, Any]
    _gone: dict[str, str]
    _calls: list[None]
    _live: dict[Service, None]
    _state: str
    _refusing: bool
    _recorders: dict[Service, tuple[Handler, Handler]] | None
    _arecorders: dict[Service, tuple[AsyncHandler, AsyncHandler]] | None

    # The lifecycle counts calls in flight in lists of its own (meshlite._inflight),
    # whether or not the mesh records metrics: each service's (Service._calls, which
    # a retired service drains), and the mesh's own for calls to an override's fake.
    # Closing waits for all of them to drain and refuses new calls by its state alone.
    # Metrics record each call through the service's series (observability._metrics
    # recorded / arecorded, as ml.Metrics does), through the recorded chain
    # MeshMetrics keeps per service.

    def _target(self, name: str) -> Any:
        target = self._targets.get(name)
        if target is None:
            known = ", ".join(sorted(self._services)) or "none"
            gone = self._gone.get(name)
            if gone is not None:  # a config's service: registering it in code is no help
                raise ConfigError(f"Mesh: no service named {name!r} now: {gone} (known "
                                  f"services: {known})", service=name, policy="mesh")
            raise ConfigError(f"Mesh: no service named {name!r} (known services: {known}); "
                              "register it with mesh.register(ml.Service(...))", policy="mesh")
        return target

    def target(self, name: str) -> Any:
        """What calls to ``name`` reach now: its ``Service``, or the fake of an active
        :meth:`override` (the HTTP clients' view of the mesh).

        Raises:
            ConfigError: no such service.
        """
        target = self._targets.get(name)  # every routed HTTP request asks
        return target if target is not None else self._target(name)

    @property
    def _in_flight(self) -> int:
        return count(self._calls) + sum(count(s._calls) for s in tuple(self._live))

    @_in_flight.setter
    def _in_flight(self, value: int) -> None:
        # MeshLifecycle declares a plain attribute; here it is derived.
        raise AttributeError("Mesh._in_flight is counted from the calls started and ended")

    def _refused(self) -> MeshClosedError:
        return MeshClosedError(
            f"Mesh: the mesh is {self._state}; calls are refused until it is "
            "opened again (async with mesh / with mesh)", policy="mesh")

    def _enter(self) -> None:
        calls = self._calls
        # Counted before the state check: a close that set "closing" after this call
        # saw "open" then finds it in flight and waits for it.
        calls.append(None)
        if self._refusing:
            calls.pop()
            raise self._refused()

    def _leave(self) -> None:
        self._calls.pop()

    async def dispatch(self, service: Service, ctx: CallContext) -> Any:
        """Run ``ctx`` through ``service``'s pipeline and routing (async), as the
        current call; used by :meth:`call` and the HTTP transport.

        Raises:
            MeshClosedError: the mesh is closing or closed.
        """
        calls = service._calls
        calls.append(None)  # _enter, inlined (every call runs it), on the service's
        if self._refusing:
            calls.pop()
            raise self._refused()
        token = _set_current(ctx)
        try:
            handler = service._ahandler
            recorders = self._arecorders
            if recorders is None:
                return await handler(ctx)
            try:
                chain, record = recorders[service]
            except KeyError:
                chain = None
            if chain is not handler:  # a new service, or its chain changed
                record = cast(MeshMetrics, self.metrics).arecorder(service, handler)
            return await record(ctx)
        except BaseException:
            # The last attempt's error holds, through its traceback, the frames that
            # hold ctx: a reference cycle only the garbage collector would free.
            ctx.last_error = None
            raise
        finally:
            _reset_current(token)
            calls.pop()

    def dispatch_sync(self, service: Service, ctx: CallContext) -> Any:
        """Sync twin of :meth:`dispatch`."""
        handler = service._handler or service.sync_handler()
        calls = service._calls
        calls.append(None)  # _enter, inlined (every call runs it), on the service's
        if self._refusing:
            calls.pop()
            raise self._refused()
        token = _set_current(ctx)
        try:
            recorders = self._recorders
            if recorders is None:
                return handler(ctx)
            try:
                chain, record = recorders[service]
            except KeyError:
                chain = None
            if chain is not handler:  # a new service, or its chain changed
                record = cast(MeshMetrics, self.metrics).recorder(service, handler)
            return record(ctx)
        except BaseException:
            # The last attempt's error holds, through its traceback, the frames that
            # hold ctx: a reference cycle only the garbage collector would free.
            ctx.last_error = None
            raise
        finally:
            _reset_current(token)
            calls.pop()

    # Typed for callers: ``fn``'s arguments after the backend are checked against
    # ``args`` / ``kwargs``, and the result is what ``fn`` returns (awaited when it is
    # awaitable). An override's fake stands in for the backend at run time.
    @overload
    async def call(self, name: str, fn: Callable[Concatenate[Backend, P], Awaitable[T]], /,
                   *args: P.args, **kwargs: P.kwargs) -> T: ...

    @overload
    async def call(self, name: str, fn: Callable[Concatenate[Backend, P], T], /,
                   *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def call(self, name: str, fn: Callable[..., Any], /, *args: Any,
                   **kwargs: Any) -> Any:
        """Call ``fn(backend, *args, **kwargs)`` on a backend of service ``name``, through
        the service's pipeline; each attempt picks a backend. ``fn`` may be sync or async.

        Raises:
            ConfigError: no such service.
            NoHealthyBackendError: the service has no backend to route to.
            MeshClosedError: the mesh is closing or closed.
        """
        target = self._targets.get(name)  # _target, inlined: a frame less per call
        if not isinstance(target, Service):  # an override: the fake is the backend
            if target is None:
                self._target(name)  # raises: no such service
            self._enter()
            try:
                result = fn(target, *args, **kwargs)
                return (await result) if inspect.isawaitable(result) else result
            finally:
                self._leave()
        operation = getattr(fn, "__qualname__", None)  # _operation_of's usual case
        if type(operation) is not str or not operation:
            operation = _operation_of(fn)
        ctx = CallContext(fn, args, kwargs, operation, name, _get_current())
        return await self.dispatch(target, ctx)

    def call_sync(self, name: str, fn: Callable[Concatenate[Backend, P], T], /,
                  *args: P.args, **kwargs: P.kwargs) -> T:
        """Sync twin of :meth:`call`: ``fn`` must be sync."""
        target: Any = self._targets.get(name)  # a Service, or an override's fake
        if not isinstance(target, Service):
            if target is None:
                self._target(name)  # raises: no such service
            self._enter()
            try:
                return fn(target, *args, **kwargs)
            finally:
                self._leave()
        operation = getattr(fn, "__qualname__", None)  # _operation_of's usual case
        if type(operation) is not str or not operation:
            operation = _operation_of(fn)
        ctx = CallContext(fn, args, kwargs, operation, name, _get_current())
        result: T = self.dispatch_sync(target, ctx)
        if type(result) in NOT_RUN:
            if type(result) is CoroutineType:
                raise async_called_sync(result, fn, "await mesh.call(name, fn, ...)")
            refuse_generator(fn)  # a generator function, refused as when decorated
        return result
