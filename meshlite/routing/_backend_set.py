"""A service's backend set: installing it, replacing it, and who hears of removals.

A mixin of :class:`~meshlite.routing.Service`. Each backend gets an
:class:`~meshlite.routing._endpoint.Endpoint` (kept across a replacement while its
address and settings are unchanged), the balancer and outlier detection are told of
the new set, and the rotation is recomputed, all under the service's lock; routing
reads the result as one tuple. A backend taken out leaves what its endpoint learnt
behind for a while (:class:`_Left`), which it takes up again if it comes back.
Nothing here runs per call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .._clock import Clock
from .._events import Event, EventHooks
from .._statelog import announce
from .._validate import fail
from ._backend import Backend, BackendLike, as_backends
from ._balancers import Balancer
from ._decay import DEFAULT_EWMA_DECAY_SECONDS, weight_kept
from ._endpoint import Endpoint
from ._events import BackendsChanged
from ._outlier import OutlierDetection

__all__ = ["REMEMBERED_BACKENDS", "REMEMBERED_SECONDS", "BackendSet"]

_log = logging.getLogger("meshlite.routing")

REMEMBERED_SECONDS = 300.0
"""How long a removed backend's learnt state (ejection, health, latency estimate,
outlier streak) waits for it to come back, on the service clock; an ejection that
lasts longer is kept as long as it lasts. A DNS record that flaps, or a registry
that answers with a rotating subset, takes a backend out and puts it back: it must
not come back with its ejection, its failed health check and its latency forgotten
(outlier detection ejecting it again, at the cost of failed attempts, each time)."""

REMEMBERED_BACKENDS = 1024
"""At most this many removed backends are remembered per service (the most recently
removed), so a set whose addresses never repeat costs bounded memory."""


@dataclass(frozen=True, slots=True)
class _Left:
    """What a removed backend's endpoint had learnt, kept for its return."""

    at: float  # when it was removed (service clock)
    until: float  # forgotten from then on
    ewma: float  # its latency estimate when it was removed
    ejected_until: float | None
    ejected_reason: str
    ejections: int
    returned_at: float | None
    manual: bool  # ejected by hand
    healthy: bool
    health_reason: str
    health_successes: int
    health_failures: int
    consecutive_failures: int
    outcomes: tuple[bool, ...] | None

    @classmethod
    def of(cls, endpoint: Endpoint, now: float, manual: bool) -> _Left:
        ejected = endpoint.ejected_until
        return cls(now, max(now + REMEMBERED_SECONDS, ejected or 0.0), endpoint.ewma,
                   ejected, endpoint.ejected_reason, endpoint.ejections,
                   endpoint.returned_at, manual, endpoint.healthy, endpoint.health_reason,
                   endpoint.health_successes, endpoint.health_failures,
                   endpoint.consecutive_failures,
                   None if endpoint.outcomes is None else tuple(endpoint.outcomes))

    def resume(self, endpoint: Endpoint, now: float) -> None:
        """Give ``endpoint``, new for this address, what its predecessor had learnt."""
        until = self.ejected_until
        if until is not None and until <= now:  # it ran out while the backend was away
            until, endpoint.returned_at = None, until
        else:
            endpoint.returned_at = self.returned_at
        endpoint.ejected_until, endpoint.ejected_reason = until, self.ejected_reason
        endpoint.ejections = self.ejections
        endpoint.healthy, endpoint.health_reason = self.healthy, self.health_reason
        endpoint.health_successes = self.health_successes
        endpoint.health_failures = self.health_failures
        endpoint.consecutive_failures = self.consecutive_failures
        if self.outcomes is not None and endpoint.outcomes is not None:
            endpoint.outcomes.extend(self.outcomes)
        ewma = self.ewma * weight_kept(now - self.at, DEFAULT_EWMA_DECAY_SECONDS)
        if ewma > 0.0:  # the estimate, faded since, is its prior (as a probe's latency)
            endpoint.probed(ewma)


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
    _manual: frozenset[Endpoint]  # (Rotation's: the endpoints ejected by hand)
    _histogram_bounds: tuple[float, ...] | None = None
    """Bucket bounds of the attempt latency histogram each endpoint keeps, once a
    mesh recording metrics asked for it (:meth:`_record_histograms`)."""
    _watchers: tuple[Callable[[tuple[Endpoint, ...]], None], ...] = ()
    # Called when set_backends takes backends out; a class default, so services
    # nobody watches store nothing.
    _left: dict[str, _Left] | None = None
    # Removed backends' learnt state by address, oldest removal first (made at the
    # first removal; under the lock).

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
        unchanged keep their statistics and ejection state. A backend taken out and
        put back within ``REMEMBERED_SECONDS`` (or while its ejection lasts) takes
        up its ejection, its health and its outlier streak again, and its latency
        estimate as a prior; attempts still in flight on it when it was taken out
        finish as they are.

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
            now = self.clock.monotonic()
            old = {e.address: e for e in self._endpoints}
            left = self._left
            endpoints = []
            returning: list[tuple[Endpoint, _Left]] = []
            for b in backends:
                endpoint = old.pop(b.address, None)
                if endpoint is None:
                    endpoint = self._endpoint(b)
                    was = left.pop(b.address, None) if left else None
                    if was is not None:
                        returning.append((endpoint, was))
                elif endpoint.backend != b:  # a new weight or metadata, the same backend:
                    endpoint.reweigh(b)  # its latencies, ejection and health stay
                endpoints.append(endpoint)
            self._endpoints = tuple(endpoints)
            if self.outlier_detection is not None:
                for e in self._endpoints:
                    self.outlier_detection.prepare(e)
            self._remember(old.values(), returning, now)
            update = getattr(self.balancer, "update", None)
            if update is not None:
                update(self._endpoints)
            events = self._recompute(now)
        self._emit(events)

    def _remember(self, removed: Iterable[Endpoint],
                  returning: list[tuple[Endpoint, _Left]], now: float) -> None:
        """Keep what the ``removed`` endpoints learnt, hand it to those ``returning``
        (new endpoints of addresses removed before), and forget what is too old or
        too many. Caller holds the lock."""
        manual = self._manual
        for endpoint, was in returning:
            was.resume(endpoint, now)
            if was.manual and endpoint.ejected_until is not None:
                manual = manual | {endpoint}
        left = self._left
        for endpoint in removed:
            if left is None:
                left = self._left = {}
            left[endpoint.address] = _Left.of(endpoint, now, endpoint in manual)
            manual = manual - {endpoint} if endpoint in manual else manual
        if manual is not self._manual:
            self._manual = manual
        if left:
            if any(was.until <= now for was in left.values()):
                left = self._left = {a: w for a, w in left.items() if w.until > now}
            while len(left) > REMEMBERED_BACKENDS:
                del left[next(iter(left))]

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
