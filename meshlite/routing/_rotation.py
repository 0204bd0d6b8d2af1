"""Which of a service's endpoints are in rotation: ejection, health, panic mode.

A mixin of :class:`~meshlite.routing.Service`, kept apart because it is the one
part of a service that changes state off the hot path: the candidate tuple routing
reads is rebuilt here, under the service's lock, only when an endpoint is ejected,
returns, or changes health. Operators eject and restore backends by hand here too
(:meth:`Rotation.eject`, :meth:`Rotation.restore`; the dashboard's admin API).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable

from .._clock import Clock
from .._errors import ConfigError, NoHealthyBackendError
from .._events import Event, EventHooks
from .._statelog import announce
from .._validate import optional_positive
from ._endpoint import Endpoint
from ._events import (
    BackendEjected,
    BackendReturned,
    EjectionSkipped,
    HealthCheckFailed,
    HealthCheckRecovered,
    PanicModeEntered,
    PanicModeExited,
)
from ._outlier import OutlierDetection

__all__ = ["MANUAL", "Rotation"]

MANUAL = "manual"
"""The ``reason`` of the events of an ejection or return made by hand."""


class Rotation:
    """Rotation state and transitions (mixed into ``Service``)."""

    name: str
    clock: Clock
    hooks: EventHooks
    panic_mode: bool
    outlier_detection: OutlierDetection | None
    _lock: threading.Lock
    _endpoints: tuple[Endpoint, ...]
    _available: tuple[Endpoint, ...]
    _next_change: float
    _panic: bool
    _track: Callable[[], None]  # (FirstWave's)
    _manual: frozenset[Endpoint] = frozenset()
    # Endpoints ejected by hand (replaced, never mutated, under the lock); a class
    # default so services that never see a manual ejection store nothing.
    _skips_told: frozenset[Endpoint] = frozenset()
    # Endpoints whose EjectionSkipped was logged since the rotation last changed:
    # during an outage the cap skips a failing backend at every streak, and one line
    # says it (hooks and metrics still get every skip).

    def _eject(self, endpoint: Endpoint, reason: str) -> None:
        detector = self.outlier_detection
        assert detector is not None
        repeat: EjectionSkipped | None = None
        with self._lock:
            now = self.clock.monotonic()
            # Let expired ejections return first, so they do not count against the cap.
            events = self._recompute(now) if now >= self._next_change else []
            if endpoint.ejected_until is not None or endpoint not in self._endpoints:
                pass
            elif not detector.may_eject(sum(1 for e in self._endpoints
                                            if e.ejected_until is not None),
                                        len(self._endpoints)):
                skipped = EjectionSkipped(policy="outlier_detection", service=self.name,
                                          address=endpoint.address, reason=reason)
                if endpoint in self._skips_told:
                    repeat = skipped
                else:
                    self._skips_told = self._skips_told | {endpoint}
                    events.append(skipped)
            else:
                seconds = detector.eject(endpoint, now, reason)
                events.append(BackendEjected(policy="outlier_detection", service=self.name,
                                             address=endpoint.address, reason=reason,
                                             seconds=seconds, ejections=endpoint.ejections))
                events.extend(self._recompute(now))
        self._emit(events)
        if repeat is not None and self.hooks.active:
            self.hooks.emit(repeat)

    # -- by hand ------------------------------------------------------------------

    def eject(self, address: str, seconds: float | None = None) -> None:
        """Take the backend at ``address`` out of rotation by hand (an operator's
        decision, as the dashboard's admin API makes it).

        The ejection holds until :meth:`restore` (``seconds=None``) or for
        ``seconds``. ``max_ejection_percent`` does not apply to it (it still counts
        against the cap for outlier detection's own ejections), the backend's
        ejection count is left alone, and it works without outlier detection. If
        every backend ends up out, panic mode (when on) routes to all of them.
        Ejecting a backend already out replaces its ejection with this one. Emits
        ``BackendEjected(policy="routing", reason="manual")`` (``seconds`` is
        ``inf`` until restored).

        Raises:
            ConfigError: no backend has that address (the message lists them), or
                ``seconds`` is not a number > 0.
        """
        seconds = optional_positive(f"Service {self.name!r}.eject", "seconds", seconds)
        with self._lock:
            endpoint = self._find(address)
            now = self.clock.monotonic()
            events = self._recompute(now) if now >= self._next_change else []
            endpoint.ejected_until = math.inf if seconds is None else now + seconds
            endpoint.ejected_reason = MANUAL
            # Drop endpoints since removed by set_backends, so none is kept alive
            # (one set of the backends: O(n) per ejection, not O(n) per manual one).
            self._manual = frozenset((*self._manual, endpoint)).intersection(self._endpoints)
            events.append(BackendEjected(
                policy="routing", service=self.name, address=endpoint.address, reason=MANUAL,
                seconds=math.inf if seconds is None else seconds,
                ejections=endpoint.ejections))
            events.extend(self._recompute(now))
        self._emit(events)

    def restore(self, address: str) -> bool:
        """Put the backend at ``address`` back into rotation now, ending its ejection,
        whether made by hand or by outlier detection. A backend failing its active
        health check stays out until the check passes. Emits
        ``BackendReturned(policy="routing", reason="manual")`` when it was ejected.

        Returns:
            Whether the backend was ejected.

        Raises:
            ConfigError: no backend has that address (the message lists them).
        """
        with self._lock:
            endpoint = self._find(address)
            if endpoint.ejected_until is None:
                return False
            now = self.clock.monotonic()
            endpoint.ejected_until = None
            endpoint.returned_at = now
            self._manual = self._manual - {endpoint}
            events: list[Event] = [BackendReturned(
                policy="routing", service=self.name, address=endpoint.address, reason=MANUAL,
                healthy=endpoint.healthy)]
            events.extend(self._recompute(now))
        self._emit(events)
        return True

    def _find(self, address: str) -> Endpoint:
        for e in self._endpoints:
            if e.address == address:
                return e
        known = ", ".join(e.address for e in self._endpoints) or "none"
        raise ConfigError(f"service {self.name!r} has no backend {address!r} "
                          f"(backends: {known})", service=self.name, policy="routing")

    def _set_health(self, endpoint: Endpoint, healthy: bool, reason: str) -> None:
        self._set_healths(((endpoint, healthy, reason),))

    def _set_healths(self, changes: Iterable[tuple[Endpoint, bool, str]]) -> None:
        """Apply a health round's transitions (endpoint, healthy, reason), then
        rebuild the candidates once: O(n) a round, not a rebuild per backend. A
        backend removed while its probe ran is gone: its answer changes nothing (and
        says nothing: its series and log lines went with it)."""
        events: list[Event] = []
        with self._lock:
            current = set(self._endpoints)
            for endpoint, healthy, reason in changes:
                if endpoint not in current:
                    continue
                endpoint.healthy = healthy
                endpoint.health_reason = reason
                if healthy:
                    events.append(HealthCheckRecovered(
                        policy="health_check", service=self.name, address=endpoint.address))
                else:
                    events.append(HealthCheckFailed(
                        policy="health_check", service=self.name, address=endpoint.address,
                        reason=reason))
            events.extend(self._recompute(self.clock.monotonic()))
        self._emit(events)

    def _due(self) -> tuple[Endpoint, ...]:
        """The candidates now, returning backends whose ejection ran out."""
        now = self.clock.monotonic()
        if now < self._next_change:
            return self._available
        with self._lock:
            events = self._recompute(now)
            available = self._available
        self._emit(events)
        return available

    def _recompute(self, now: float) -> list[Event]:
        # Caller holds self._lock.
        events: list[Event] = []
        self._skips_told = frozenset()  # the rotation may change: a skip is news again
        next_change = math.inf
        for e in self._endpoints:
            until = e.ejected_until
            if until is None:
                continue
            if now >= until:
                e.ejected_until = None
                # Back in rotation since its ejection ended, though noticed now (the
                # next call of a quiet service): forgiveness counts from then.
                e.returned_at = until
                manual = e in self._manual
                if manual:
                    self._manual = self._manual - {e}
                events.append(BackendReturned(
                    policy="routing" if manual else "outlier_detection", service=self.name,
                    address=e.address, reason="expired", healthy=e.healthy))
            else:
                next_change = min(next_change, until)
        self._next_change = next_change
        up = tuple(e for e in self._endpoints if e.ejected_until is None and e.healthy)
        was_panic = self._panic
        if up or not self._endpoints:
            self._available, self._panic = up, False
            if was_panic:
                events.append(PanicModeExited(policy="routing", service=self.name,
                                              available=len(up)))
        else:
            self._available = self._endpoints if self.panic_mode else ()
            self._panic = self.panic_mode
            if self.panic_mode and not was_panic:
                events.append(PanicModeEntered(
                    policy="routing", service=self.name, backends=len(self._endpoints),
                    reasons=tuple(f"{e.address}: {self.out_reason(e)}"
                                  for e in self._endpoints)))
        self._track()  # the first wave's gate follows the candidates
        return events

    def _emit(self, events: list[Event]) -> None:
        for event in events:  # state changes: logged even when nobody listens
            announce(self.hooks, event)

    def out_reason(self, endpoint: Endpoint) -> str:
        """Why ``endpoint`` is out of rotation ("" when it is in)."""
        until = endpoint.ejected_until
        if until is not None:
            if until == math.inf:
                return "ejected by hand until restored"
            left = max(0.0, until - self.clock.monotonic())
            if endpoint in self._manual:
                return f"ejected by hand for {left:.3g} s more"
            return f"ejected for {left:.3g} s more after {endpoint.ejected_reason}"
        if not endpoint.healthy:
            return f"failing its health check: {endpoint.health_reason}"
        return ""

    def _no_backend(self) -> NoHealthyBackendError:
        if not self._endpoints:
            return NoHealthyBackendError(
                f"service {self.name!r} has no backends: give it backends=[...] or check "
                "its discovery source", service=self.name, policy="routing")
        reasons = "; ".join(f"{e.address} is {self.out_reason(e)}" for e in self._endpoints)
        return NoHealthyBackendError(
            f"service {self.name!r} has no healthy backend ({reasons}); wait for them to "
            "recover, or set panic_mode=True to route to all of them anyway",
            service=self.name, policy="routing")
