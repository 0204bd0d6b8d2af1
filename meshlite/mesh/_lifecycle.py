"""The mesh's lifecycle: open (start components in dependency order), drain, close.

A mixin of :class:`meshlite.Mesh`: ``async with mesh`` runs components as tasks on
the caller's loop, ``with mesh`` on one :class:`LoopThread`. The HTTP connection
pools and ``mesh.aiohttp()`` sessions it closes are kept by its base,
:class:`~meshlite.mesh._connections.MeshConnections`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from .._clock import Clock
from .._errors import ConfigError
from .._fork import fork_safe
from .._inflight import calls_list
from ..routing._lifecycle import LoopThread, dependency_waves, start_waves, stop_all
from ..routing._service import Lifecycle, Service
from ..telemetry._bounded import flush_all, registered
from . import _unclosed
from ._connections import MeshConnections, close_async_pools_here

__all__ = ["MeshLifecycle"]

_DRAIN_POLL = 0.005
"""Seconds between checks of the calls in flight while draining."""

_LOOP_POLL = 0.05
"""Seconds between checks that the loop a close from elsewhere waits on still runs."""

_log = logging.getLogger("meshlite.mesh")

_OPENING = fork_safe(threading.Lock())
"""Held while a mesh checks that it is not open and marks itself open (rare: one lock
for every mesh)."""

_INHERITED: list[Any] = []
"""What a forked child's meshes had from the parent's event loops (a loop thread,
aiohttp sessions), kept and never closed here: a copy of the parent's loop shares
its epoll set with the parent, and closing it (or its sockets) in the child would
take the parent's sockets out of that set."""


class MeshLifecycle(MeshConnections):
    """Opening and closing a mesh (mixed into ``Mesh``); closing its connections is
    its base's, :class:`~meshlite.mesh._connections.MeshConnections`."""

    clock: Clock
    drain_timeout: float
    _services: dict[str, Service]
    _targets: dict[str, Any]
    _extra: list[Service]
    _components: list[Lifecycle]
    _started: list[Lifecycle]
    _thread: LoopThread | None
    _in_flight: int
    _calls: list[None]
    _state: str
    _refusing: bool
    _guard: asyncio.Task[None] | None = None
    """Opened on an event loop: what closes the mesh if the loop ends first
    (``_unclosed.watch``)."""
    _loop: asyncio.AbstractEventLoop | None = None
    """Opened on an event loop (``async with``): the loop its components run on,
    where a close from another thread or loop stops them."""
    def after_fork(self) -> None:
        """In a forked child: a mesh open in the parent is not open here. Its loop
        thread and the components it started (health checks, watchers, the metrics
        writer, the dashboard) are the parent's threads and tasks, which a fork does
        not copy: the child's mesh is left as never opened (calls work, without active
        health checks), and opening it in the child starts the child's own. Closing it
        never waits on the parent's loop, nor on the calls the parent's threads had in
        flight (they never end here; one of the thread that forked ends on the list it
        began on, which is no longer the mesh's)."""
        _INHERITED.extend(x for x in (self._thread, self._sessions) if x)
        self._thread, self._sessions, self._guard, self._loop = None, None, None, None
        self._calls = calls_list()
        if self._state in ("open", "closing"):
            self._started = []
            self._set_state("idle")

    def _set_state(self, state: str) -> None:
        # Every change of state goes through here; the dispatch refuses calls by
        # reading _refusing after counting the call in flight (a flag: one attribute
        # read per call).
        self._state = state
        self._refusing = state in ("closing", "closed")

    def _components_in_order(self) -> list[list[list[Lifecycle]]]:
        # Waves of groups (start_waves): a service's components in order, the
        # services of a wave side by side, the mesh's own components last.
        waves = [[list(s.components) for s in wave if s.components]
                 for wave in dependency_waves(self._services)]
        return [*waves, [list(self._components)]]

    def _open(self) -> list[list[list[Lifecycle]]]:
        # Checked and set under one lock: two threads opening the mesh at once would
        # otherwise both start every component, one loop thread left running forever.
        with _OPENING:
            if self._state in ("open", "closing"):
                raise ConfigError(
                    "Mesh: the mesh is already open; open it once and share it (calls "
                    "from any thread or task use the open mesh)", policy="mesh")
            self._claim(self._services.values())
            components = self._components_in_order()
            self._set_state("open")
        _unclosed.remember(self)
        return components

    def _claim(self, services: Iterable[Service]) -> None:
        """Mark ``services`` that have components as this mesh's while it is open
        (the caller holds ``_OPENING``), or raise if another open mesh has one: a
        mesh starts and stops a service's components (its health checks, discovery),
        so of two open meshes the first to close would stop the other's. A service
        without components may be open in several meshes (each call carries the
        caller name of the mesh that registered the service last).

        Raises:
            ConfigError: a service is open in another mesh (none is marked then).
        """
        services = [service for service in services if service.components]
        for service in services:
            other = service._open_in()
            if other is not None and other is not self and other._state in (
                    "open", "closing"):
                raise ConfigError(
                    f"Mesh: service {service.name!r} is open in another mesh; a Service "
                    "with components (health checks, discovery) runs them for one open "
                    "mesh at a time: build one Service per mesh (ml.Service(...) again, "
                    "or a Mesh.from_config of each), or close the other mesh first",
                    policy="mesh", service=service.name)
        mine = weakref.ref(self)
        for service in services:
            service._open_in = mine

    def _claim_if_open(self, service: Service) -> None:
        """:meth:`_claim` ``service`` if this mesh is open (registering it now).

        Raises:
            ConfigError: the mesh is open and another open mesh has ``service``.
        """
        with _OPENING:
            if self._state == "open":
                self._claim((service,))

    async def start(self) -> None:
        """Open the mesh: start every component in dependency order (``async with``)."""
        components = self._open()
        self._loop = asyncio.get_running_loop()
        try:
            await start_waves(components, self._started)
        except BaseException:
            self._set_state("closed")
            _unclosed.forget(self)
            raise
        self._guard = _unclosed.watch(self)

    async def aclose(self) -> None:
        """Drain calls in flight (up to ``drain_timeout``), stop components in reverse
        order, close the HTTP connection pools and flush the telemetry (traces and
        metrics exports, up to 5 s in all, off the event loop)."""
        self._set_state("closing")
        self._drop_guard()
        try:
            clock = self.clock
            deadline = clock.monotonic() + self.drain_timeout
            try:
                while self._in_flight > 0 and (left := deadline - clock.monotonic()) > 0:
                    await clock.asleep(min(_DRAIN_POLL, left))
            finally:
                # Cancelled while draining (an asyncio.timeout around the close): the
                # wait ends, the close does not; the cancellation propagates after it.
                await self._shut_down()
        finally:
            self._set_state("closed")
            _unclosed.forget(self)

    def _drop_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            _unclosed.drop(guard)

    async def _shut_down(self) -> None:
        """Stop the components, close the sessions and pools, flush the telemetry:
        every step, also when the caller is cancelled during one (the cancellation
        is raised once all have run; the flush is bounded)."""
        cancelled: asyncio.CancelledError | None = None
        for step in (self._stop_components, self._close_sessions, self._close_pools,
                     self._flush):
            try:
                await step()
            except asyncio.CancelledError as error:
                cancelled = error
        if cancelled is not None:
            raise cancelled

    async def _stop_components(self) -> None:
        # Where they run: a `with mesh` open's on its loop thread (stopped then; a
        # component's task awaited from another loop never ends), another loop's there.
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                await thread.arun(stop_all(self._started))
            finally:
                await asyncio.to_thread(thread.stop)
            return
        loop, self._loop = self._loop, None
        here = asyncio.get_running_loop()
        if loop is None or loop is here:
            await stop_all(self._started)
            return
        future = self._stop_on(loop)
        stopping = asyncio.wrap_future(future)
        # Waited for while that loop runs: its end may cancel the stop (asyncio.run
        # does, and the stop goes on through it: not this caller's cancellation), or
        # leave it never to run again (a loop closed under it).
        while not (await asyncio.wait([stopping], timeout=_LOOP_POLL))[0]:
            if not (future.done() or loop.is_running()):
                _loop_left(loop)
                return
        if not stopping.cancelled():
            stopping.result()

    def _stop_on(self, loop: asyncio.AbstractEventLoop) -> concurrent.futures.Future[None]:
        """Stop the components an async open started on ``loop``, from another thread
        or loop: on ``loop`` while it runs; at once, when it has closed (its tasks
        ended with it)."""
        started = self._started
        if not started:
            return _done()
        if loop.is_closed():
            started.clear()
            return _done()
        self._started = []  # (a reopening starts its own: these stop on their loop)
        return asyncio.run_coroutine_threadsafe(stop_all(started), loop)

    @staticmethod
    async def _flush() -> None:
        if registered():
            # Now, not at exit: uvicorn ends its process on SIGTERM by re-raising
            # it once the app shut down, which runs no exit hook.
            await asyncio.to_thread(flush_all)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        components = self._open()
        if any(group for wave in components for group in wave):
            self._thread = LoopThread()
            try:
                self._thread.run(start_waves(components, self._started))
            except BaseException:
                self._thread.stop()
                self._thread = None
                self._set_state("closed")
                _unclosed.forget(self)
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Sync twin of :meth:`aclose` (for ``with mesh``)."""
        self._set_state("closing")
        self._drop_guard()  # (opened on a loop, closed from a thread)
        try:
            clock = self.clock
            deadline = clock.monotonic() + self.drain_timeout
            try:
                while self._in_flight > 0 and (left := deadline - clock.monotonic()) > 0:
                    clock.sleep(min(_DRAIN_POLL, left))
            finally:  # interrupted while draining (Ctrl-C): the close goes on
                self._stop_here()
        finally:
            self._set_state("closed")
            _unclosed.forget(self)

    def _stop_here(self) -> None:
        """The sync close's steps after the drain (as :meth:`_shut_down`)."""
        thread, self._thread = self._thread, None
        loop, self._loop = self._loop, None
        if loop is not None:  # opened on a loop, closed from a thread
            self._stop_from_thread(loop)
        if self._sessions:
            close_async_pools_here(self)  # sessions of an async caller
        if thread is not None:
            thread.run(stop_all(self._started))
            self._close_http(thread)
            thread.stop()
        else:
            self._close_http(None)
        if registered():
            flush_all()

    def _stop_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop the components an async open started on ``loop``, from a sync close:
        waited for while ``loop`` runs in another thread (a loop that does not run
        stops them when it runs again)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        future = self._stop_on(loop)
        if running is loop or not loop.is_running():
            if running is loop:
                _log.warning("Mesh.close() called on the event loop the mesh was opened "
                             "on: use await mesh.aclose(); its components stop once the "
                             "loop runs again")
            return
        # Waited for while the loop runs (as the async close's, _stop_components).
        while True:
            try:
                future.result(_LOOP_POLL)
            except concurrent.futures.TimeoutError:
                if future.done() or loop.is_running():
                    continue
                _loop_left(loop)
            except concurrent.futures.CancelledError:
                pass  # by the loop's end: the stop went on through it
            except Exception:
                _log.exception("stopping the mesh's components on its event loop failed")
            return

    async def close_left_open(self, when: str) -> None:
        """Close the mesh, found open ``when`` (the end of its loop, of the ASGI
        lifespan that opened it), with a ``ResourceWarning`` naming it; not public
        API."""
        await _unclosed.close_left_open(self, when)

    @property
    def state(self) -> str:
        """The mesh's lifecycle state: ``"idle"`` (not opened yet), ``"open"``,
        ``"closing"`` (draining: new calls are refused) or ``"closed"``."""
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether the mesh is open: started, and neither closing nor closed."""
        return self._state == "open"

    @property
    def loop_thread(self) -> LoopThread | None:
        """The loop thread of a mesh opened with ``with mesh`` (else ``None``)."""
        return self._thread


def _loop_left(loop: asyncio.AbstractEventLoop) -> None:
    """Say that ``loop``, where a close from elsewhere is stopping the components,
    stopped running before they had stopped."""
    if loop.is_closed():
        _log.warning("the event loop the mesh was opened on was closed before the "
                     "mesh's components stopped (health checks, watchers, the "
                     "dashboard): they ended with it, unstopped. Close the mesh before "
                     "closing its loop (a loop ended by asyncio.run() lets the stop "
                     "finish)")
    else:
        _log.debug("the mesh's event loop stopped before its components did; they "
                   "stop when it runs again")


def _done() -> concurrent.futures.Future[None]:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.set_result(None)
    return future
