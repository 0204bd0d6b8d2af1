"""Which of a service's endpoints are in rotation: ejection, health, panic mode.

A mixin of :class:`~meshlite.routing.Service`, kept apart because it is the one
part of a service that changes state off the hot path: the candidate tuple routing
reads is rebuilt here, under the service's lock, only when an endpoint is ejected,
returns, or changes health.
"""

from __future__ import annotations

import math
import threading

from .._clock import Clock
from .._errors import NoHealthyBackendError
from .._events import Event, EventHooks
from ._backend import Endpoint
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

__all__ = ["Rotation"]


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

    def _eject(self, endpoint: Endpoint, reason: str) -> None:
        detector = self.outlier_detection
        assert detector is not None
        with self._lock:
            now = self.clock.monotonic()
            # Let expired ejections return first, so they do not count against the cap.
            events = self._recompute(now) if now >= self._next_change else []
            if endpoint.ejected_until is not None or endpoint not in self._endpoints:
                pass
            elif not detector.may_eject(sum(1 for e in self._endpoints
                                            if e.ejected_until is not None),
                                        len(self._endpoints)):
                events.append(EjectionSkipped(policy="outlier_detection", service=self.name,
                                              address=endpoint.address, reason=reason))
            else:
                seconds = detector.eject(endpoint, now, reason)
                events.append(BackendEjected(policy="outlier_detection", service=self.name,
                                             address=endpoint.address, reason=reason,
                                             seconds=seconds, ejections=endpoint.ejections))
                events.extend(self._recompute(now))
        self._emit(events)

    def _set_health(self, endpoint: Endpoint, healthy: bool, reason: str) -> None:
        event: Event
        with self._lock:
            endpoint.healthy = healthy
            endpoint.health_reason = reason
            if healthy:
                event = HealthCheckRecovered(policy="health_check", service=self.name,
                                             address=endpoint.address)
            else:
                event = HealthCheckFailed(policy="health_check", service=self.name,
                                          address=endpoint.address, reason=reason)
            events = [event, *self._recompute(self.clock.monotonic())]
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
        next_change = math.inf
        for e in self._endpoints:
            until = e.ejected_until
            if until is None:
                continue
            if now >= until:
                e.ejected_until = None
                e.returned_at = now
                events.append(BackendReturned(policy="outlier_detection", service=self.name,
                                              address=e.address))
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
        return events

    def _emit(self, events: list[Event]) -> None:
        if events and self.hooks.active:
            for event in events:
                self.hooks.emit(event)

    def out_reason(self, endpoint: Endpoint) -> str:
        """Why ``endpoint`` is out of rotation ("" when it is in)."""
        if endpoint.ejected_until is not None:
            left = max(0.0, endpoint.ejected_until - self.clock.monotonic())
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
