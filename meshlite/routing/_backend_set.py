"""A service's backend set: installing it, replacing it, and who hears of removals.

A mixin of :class:`~meshlite.routing.Service`. Each backend gets an
:class:`~meshlite.routing._endpoint.Endpoint` (kept across a replacement while its
address and settings are unchanged), the balancer and outlier detection are told of
the new set, and the rotation is recomputed, all under the service's lock; routing
reads the result as one tuple. Nothing here runs per call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from .._clock import Clock
from .._events import Event, EventHooks
from .._statelog import announce
from .._validate import fail
from ._backend import Backend, BackendLike, as_backends
from ._balancers import Balancer
from ._endpoint import Endpoint
from ._events import BackendsChanged
from ._outlier import OutlierDetection

__all__ = ["BackendSet"]

_log = logging.getLogger("meshlite.routing")


class BackendSet:
    """The backend set and its replacement (mixed into ``Service``)."""

    name: str
    clock: Clock
    hooks: EventHooks
    balancer: Balancer
    outlier_detection: OutlierDetection | None
    _lock: threading.Lock
    _endpoints: tuple[Endpoint, ...]
    _recompute: Callable[[float], list[Event]]  # (Rotation's)
    _emit: Callable[[list[Event]], None]  # (Rotation's)
    _first_answered: Callable[[], None]  # (FirstWave's)
    _histogram_bounds: tuple[float, ...] | None = None
    """Bucket bounds of the attempt latency histogram each endpoint keeps, once a
    mesh recording metrics asked for it (:meth:`_record_histograms`)."""
    _watchers: tuple[Callable[[tuple[Endpoint, ...]], None], ...] = ()
    # Called when set_backends takes backends out; a class default, so services
    # nobody watches store nothing.

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The service's backends, in order."""
        return tuple(e.backend for e in self._endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The live state of each backend."""
        return self._endpoints

    def after_fork(self) -> None:
        """In a forked child: the parent's attempts in flight are not counted on any
        endpoint (they never end here)."""
        for endpoint in self._endpoints:
            endpoint.after_fork()

    def set_backends(self, backends: BackendLike | Iterable[BackendLike]) -> None:
        """Replace the backend set (discovery calls this). Backends whose address is
        unchanged keep their statistics and ejection state.

        Raises:
            ConfigError: a bad backend or a duplicate address.
        """
        self.replace_backends(backends)()

    def replace_backends(self, backends: BackendLike | Iterable[BackendLike]
                         ) -> Callable[[], None]:
        """:meth:`set_backends` in two steps (not public API): the backends are
        replaced now, and the function returned tells of it (``BackendsChanged``, the
        watchers). A config reload switches the service's pipeline in between, so a
        call a thread starts meanwhile sees neither step half done for long.

        Raises:
            ConfigError: as for :meth:`set_backends` (nothing is replaced).
        """
        owner = f"Service {self.name!r}"
        new = as_backends(backends, owner)
        old = self._endpoints
        self._install(new, owner)

        def tell() -> None:
            before, after = {e.address for e in old}, {b.address for b in new}
            if before == after:
                return
            announce(self.hooks, BackendsChanged(
                policy="routing", service=self.name,
                added=tuple(sorted(after - before)), removed=tuple(sorted(before - after))))
            removed = tuple(e for e in old if e.address not in after)
            for watcher in self._watchers if removed else ():
                try:
                    watcher(removed)
                except Exception:  # the backends are set: a watcher's failure is its own
                    _log.exception("a watcher of service %r's backends raised; ignored",
                                   self.name)

        return tell

    def watch_backends(self, watcher: Callable[[tuple[Endpoint, ...]], None]
                       ) -> Callable[[], None]:
        """Call ``watcher(removed)`` after each :meth:`set_backends` that takes
        backends out of the set, with their endpoints (their ``in_flight`` attempts
        still count down), on the thread that called it. The HTTP layer retires the
        connection pools of removed backends this way; routing itself knows nothing
        of it. Returns a function that stops the calls (calling it twice is
        harmless)."""
        with self._lock:
            self._watchers = (*self._watchers, watcher)

        def remove() -> None:
            with self._lock:
                self._watchers = tuple(w for w in self._watchers if w is not watcher)

        return remove

    def _install(self, backends: list[Backend], owner: str) -> None:
        seen: set[str] = set()
        for b in backends:
            if b.address in seen:
                fail(owner, "backends", b.address, "unique addresses (this one is repeated)")
            seen.add(b.address)
        with self._lock:
            old = {e.address: e for e in self._endpoints}
            endpoints = []
            for b in backends:
                endpoint = old.get(b.address)
                if endpoint is None:
                    endpoint = self._endpoint(b)
                elif endpoint.backend != b:  # a new weight or metadata, the same backend:
                    endpoint.reweigh(b)  # its latencies, ejection and health stay
                endpoints.append(endpoint)
            self._endpoints = tuple(endpoints)
            if self.outlier_detection is not None:
                for e in self._endpoints:
                    self.outlier_detection.prepare(e)
            update = getattr(self.balancer, "update", None)
            if update is not None:
                update(self._endpoints)
            events = self._recompute(self.clock.monotonic())
        self._emit(events)

    def _endpoint(self, backend: Backend) -> Endpoint:
        """A new endpoint for ``backend`` (keeping a latency histogram when the
        service's endpoints do)."""
        endpoint = Endpoint(backend, self.clock, on_answer=self._first_answered)
        if self._histogram_bounds is not None:
            endpoint.record_histogram(self._histogram_bounds)
        return endpoint

    def _record_histograms(self, bounds: tuple[float, ...]) -> tuple[float, ...]:
        """Have every endpoint, present and future, keep a histogram of its attempts'
        latencies (:meth:`Endpoint.record_histogram`); returns the bounds in use (the
        first ones asked for, when two meshes with metrics share this service)."""
        with self._lock:
            if self._histogram_bounds is None:
                self._histogram_bounds = bounds
            for e in self._endpoints:
                e.record_histogram(self._histogram_bounds)
            return self._histogram_bounds
