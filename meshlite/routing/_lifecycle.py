"""Lifecycle helpers of the mesh: dependency order, and the loop thread that runs
health checks (and other components) under a sync ``with mesh``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .._errors import ConfigError, MeshClosedError
from .._fork import fork_safe
from ._service import Lifecycle, Service

__all__ = ["START_CONCURRENCY", "LoopThread", "dependency_order", "dependency_waves",
           "start_all", "start_waves", "stop_all"]

T = TypeVar("T")

_log = logging.getLogger("meshlite.mesh")


def dependency_order(services: Mapping[str, Service]) -> list[Service]:
    """``services`` with every service after the ones it depends on.

    Raises:
        ConfigError: a service depends on an unknown service, or the dependencies
            form a cycle (the message names it: ``a -> b -> a``).
    """
    known = ", ".join(sorted(services)) or "none"
    errors = [f"service {s.name!r} depends on {d!r}, which is not registered "
              f"(known services: {known})"
              for s in services.values() for d in s.depends_on if d not in services]
    if errors:
        raise ConfigError("Mesh: " + "; ".join(errors), errors=errors, policy="mesh")
    order: list[Service] = []
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            cycle = [*path[path.index(name):], name]
            raise ConfigError("Mesh: dependency cycle " + " -> ".join(cycle)
                              + "; remove one of these depends_on entries", policy="mesh")
        path.append(name)
        for dep in services[name].depends_on:
            visit(dep)
        path.pop()
        done.add(name)
        order.append(services[name])

    for name in services:
        visit(name)
    return order


def dependency_waves(services: Mapping[str, Service]) -> list[list[Service]]:
    """``services`` in waves: each service in the wave after the last of those it
    depends on (the first wave depends on nothing).

    Raises:
        ConfigError: as :func:`dependency_order`.
    """
    depth: dict[str, int] = {}
    waves: list[list[Service]] = []
    for service in dependency_order(services):
        level = depth[service.name] = 1 + max(
            (depth[d] for d in service.depends_on), default=-1)
        if level == len(waves):
            waves.append([])
        waves[level].append(service)
    return waves


START_CONCURRENCY = 32
"""Services of one wave whose components start at once. A health check's start
waits for its first round: one after the other, 300 services each with a backend
that does not answer took 300 probe timeouts to open."""


async def start_waves(waves: Iterable[Sequence[Sequence[Lifecycle]]],
                      started: list[Lifecycle],
                      concurrency: int = START_CONCURRENCY) -> None:
    """Start waves of groups of components, a wave after the one before it has
    started: a group's components in order, up to ``concurrency`` groups of a wave
    at once, each component appended to ``started`` once it has. On a failure the
    groups already starting finish, no other starts, those started are stopped (in
    reverse) and the first error is re-raised."""
    failed: list[BaseException] = []

    async def run(groups: Iterator[Sequence[Lifecycle]]) -> None:
        # One of `concurrency` workers taking groups from one iterator: a wave of
        # 3,000 services makes 32 tasks, not 3,000 in one turn of the loop.
        for count, group in enumerate(groups):
            if count:
                await asyncio.sleep(0)  # starts that never wait still let calls run
            for component in group:
                if failed:
                    return
                try:
                    await component.start()
                except BaseException as error:
                    failed.append(error)
                    raise
                started.append(component)

    try:
        for wave in waves:
            groups = iter(wave)
            tasks = [asyncio.ensure_future(run(groups))
                     for _ in range(min(concurrency, len(wave)))]
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
            except BaseException:  # cancelled: let what is starting finish, then stop
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            if failed:
                raise failed[0]
    except BaseException:
        await stop_all(started)
        raise


async def start_all(components: Iterable[Lifecycle], started: list[Lifecycle]) -> None:
    """Start each component in order, appending it to ``started`` once it has; on a
    failure, stop those already started (in reverse) and re-raise."""
    try:
        for component in components:
            await component.start()
            started.append(component)
    except BaseException:
        await stop_all(started)
        raise


async def stop_all(started: list[Lifecycle]) -> None:
    """Stop the components of ``started`` in reverse order, emptying it. A component
    that fails to stop is logged and the others are still stopped; so are they when
    the caller is cancelled meanwhile, the cancellation being raised once all are
    (a component left running would outlive the mesh)."""
    cancelled: asyncio.CancelledError | None = None
    while started:
        component = started.pop()
        try:
            await component.stop()
        except Exception:
            _log.exception("stopping %r failed; continuing with the others", component)
        except asyncio.CancelledError as error:
            cancelled = error
    if cancelled is not None:
        raise cancelled


class LoopThread:
    """An event loop in a daemon thread, for components of a mesh used synchronously."""

    def __init__(self, name: str = "meshlite-mesh") -> None:
        self.loop = asyncio.new_event_loop()
        # Held while a coroutine is handed over and while stopping starts: what was
        # handed over before the stop runs as a task (cancelled by the stop), and
        # nothing is handed over after it (it would never finish: a hang).
        self._handing = fork_safe(threading.Lock())
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending,
                                                                return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result.

        Raises:
            MeshClosedError: the loop stopped (its mesh closed) before ``coro`` ended.
        """
        future = self._hand_over(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise
        except concurrent.futures.CancelledError:
            if self._stopping:
                raise self._stopped(coro) from None
            raise

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and await its result from another loop.

        Raises:
            MeshClosedError: as for :meth:`run`.
        """
        future = self._hand_over(coro)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if future.cancelled() and self._stopping:
                raise self._stopped(coro) from None
            raise

    def _hand_over(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        with self._handing:
            if not self._stopping:
                return asyncio.run_coroutine_threadsafe(coro, self.loop)
        coro.close()
        raise self._stopped(coro)

    @staticmethod
    def _stopped(coro: Coroutine[Any, Any, Any]) -> MeshClosedError:
        return MeshClosedError(
            f"the mesh's loop thread stopped (the mesh closed) before "
            f"{getattr(coro, '__qualname__', 'a coroutine')}() could finish on it; open "
            "the mesh again to run it",
            policy="mesh")

    def run_quietly(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the loop; log (do not raise) its error."""
        try:
            self.run(coro)
        except Exception:
            _log.exception("cleanup on the mesh's loop thread failed; ignored")

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread; what
        is handed to it from then on raises ``MeshClosedError``."""
        with self._handing:
            first, self._stopping = not self._stopping, True
        if first and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
