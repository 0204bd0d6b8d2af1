"""A backend's heartbeat in the Redis registry: :class:`Registration`."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from .._clock import wait_event
from .._tasks import cancel_and_wait
from ..state._base import StoreUnavailableError

if TYPE_CHECKING:
    from ..routing._backend import Backend
    from ._redis import RedisRegistry

__all__ = ["Registration"]

_log = logging.getLogger("meshlite.discovery")


class Registration:
    """One backend's registration, renewed every ``interval`` seconds while open.

    ``async with`` renews in a task of the running loop; ``with`` in a daemon
    thread. Leaving the block deregisters the backend, so watchers drop it at once.
    A renewal that fails is logged and retried at the next interval; entering the
    block raises :class:`~meshlite.state.StoreUnavailableError` if the first
    registration fails.
    """

    def __init__(self, registry: RedisRegistry, backend: Backend, interval: float) -> None:
        self.registry = registry
        self.backend = backend
        self.interval = interval
        self.renewals = 0
        """Successful registrations so far (the first one included)."""
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing = 0  # renewals failed in a row

    def _failed(self, error: Exception) -> None:
        # The first failure of a streak is logged, the rest held back until a renewal
        # succeeds (every ttl/3 of a Redis outage, for every instance, flooded the log).
        if not self._failing:
            _log.warning("heartbeat of %s in the registry of %r failed: %s; retried every "
                         "%g s, logged again once renewed", self.backend.address,
                         self.registry.service, error, self.interval)
        self._failing += 1

    def _renewed(self) -> None:
        self.renewals += 1
        if self._failing:
            _log.info("heartbeat of %s in the registry of %r renewed again after %d "
                      "failed renewals", self.backend.address, self.registry.service,
                      self._failing)
            self._failing = 0

    async def __aenter__(self) -> Registration:
        await self.registry.aregister(self.backend)
        self.renewals += 1
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.registry.aregister(self.backend)
            except Exception as error:
                self._failed(error)
            else:
                self._renewed()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                await cancel_and_wait(task)
        finally:  # (also when the caller is cancelled meanwhile)
            try:
                await self.registry.aderegister(self.backend.address)
            except StoreUnavailableError as error:  # it expires after ttl anyway
                self._failed(error)

    def __enter__(self) -> Registration:
        self.registry.register(self.backend)
        self.renewals += 1
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_sync, daemon=True,
                                        name=f"meshlite-heartbeat-{self.backend.address}")
        self._thread.start()
        return self

    def _beat_sync(self) -> None:
        while not wait_event(self._stop, self.interval):
            try:
                self.registry.register(self.backend)
            except Exception as error:
                self._failed(error)
            else:
                self._renewed()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        try:
            self.registry.deregister(self.backend.address)
        except StoreUnavailableError as error:
            self._failed(error)

    def __repr__(self) -> str:
        return f"Registration({self.backend.address!r}, every {self.interval:g} s)"

