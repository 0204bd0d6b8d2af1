"""Overriding a service for the length of a block: tests put a fake, other backends
or an ``httpx`` transport where a service's calls go.

A mixin of :class:`meshlite.Mesh`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from ..routing._service import Service, override_service
from ._retire import retire_soon

if TYPE_CHECKING:
    from ._mesh import Mesh

__all__ = ["MeshOverrides"]


class MeshOverrides:
    """``mesh.override(name, fake)`` (mixed into ``Mesh``)."""

    _services: dict[str, Service]
    _targets: dict[str, Any]
    _overriding: dict[str, list[list[Any]]]
    _extra: list[Service]

    if TYPE_CHECKING:
        def _target(self, name: str) -> Any: ...  # MeshCalls': raises on an unknown name
        def _adopt(self, service: Service) -> None: ...  # Mesh's
        def changing_registry(self) -> threading.Lock: ...  # MeshRegistry's
        def in_use(self, service: Service) -> bool: ...  # MeshRegistry's

    @contextlib.contextmanager
    def override(self, name: str, fake: Any) -> Iterator[Any]:
        """Substitute service ``name`` while the block runs (dependency injection for
        tests). Calls go to the most recent override of ``name`` still running, else
        to the registered service: blocks that overlap without nesting (two tasks,
        an ``ExitStack`` left out of order) may end in any order.

        ``fake`` may be an ``ml.Service``; backends (an address, a ``Backend``, or a
        list of them) or an object with a ``.url`` (``meshlite.testing.FakeBackend``),
        which become a plain service (round robin, no policies, no ejection); an
        ``httpx`` transport (``httpx.MockTransport``), which HTTP clients of the service
        send through; or any other object, which ``mesh.call`` passes to your function
        in place of a backend.

        The service an override makes (or is given) is the mesh's while the block
        runs: hooks, metrics series, HTTP connection pools. When the block ends, the
        mesh lets go of it as of a service a config reload retired: at once when no
        call runs on it, else once the calls still running on it have finished (up
        to the mesh's ``drain_timeout``; they complete normally). So a mesh shared
        by many tests holds no service of an override that ended.

        Raises:
            ConfigError: no such service.
        """
        self._target(name)
        made = override_service(name, fake)
        target = fake if made is None else made
        entry = [target]  # this block's override in the name's stack (by identity)
        # Entering and leaving hold the registry's lock, as a reload changing it does:
        # a reload that replaced the service between the exit's read and its write
        # would otherwise have the old one put back where calls go, for good.
        try:
            with self.changing_registry():
                if made is not None:
                    self._take_up(made)
                self._target(name)  # (a reload may have removed it meanwhile)
                self._overriding.setdefault(name, []).append(entry)
                self._targets[name] = target
        except BaseException:
            self._put_down(made)
            raise
        try:
            yield target
        finally:
            with self.changing_registry():
                self._end(name, entry)
            self._put_down(made)

    def _end(self, name: str, entry: list[Any]) -> None:
        # Under the registry's lock. Each block takes its own override out of the
        # stack, wherever it is: restoring what was there when the block began put
        # an override that had ended back for good when blocks overlapped without
        # nesting (A begins, B begins, A ends, B ends). Ending one that is not the
        # latest changes nothing where calls go.
        live = self._overriding[name]
        latest = live[-1] is entry
        live[:] = [e for e in live if e is not entry]
        if not latest:
            return
        if live:
            self._targets[name] = live[-1][0]
            return
        del self._overriding[name]
        current = self._services.get(name)  # now: a reload may have replaced it
        if current is None:  # or removed it
            self._targets.pop(name, None)
        else:
            self._targets[name] = current

    def _take_up(self, service: Service) -> None:
        # Under the registry's lock. Adopted once: a service registered already, or
        # standing in for another override, has its hooks and metrics (adopting it
        # again subscribed each hook twice). ``_extra`` holds it once per override.
        if not self.in_use(service):
            self._adopt(service)
        self._extra.append(service)

    def _put_down(self, service: Service | None) -> None:
        # The override ended (or failed to start): one of its holds on the service
        # goes, and the service is retired once nothing holds it (forget_service
        # checks again, under the lock, as it lets go).
        if service is None:
            return
        with self.changing_registry():
            index = next((i for i, s in enumerate(self._extra) if s is service), None)
            if index is None:
                return
            del self._extra[index]
            if self.in_use(service):
                return
        retire_soon(cast("Mesh", self), service)
