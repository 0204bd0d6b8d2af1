"""Event-fed metrics: what each policy and routing event adds to which counter.

Events are matched by class name (walking the class's bases), so this module needs
no import of the policies, and an event it does not know is ignored. What a policy's
events count is declared by its registration (``meshlite/policies/_registry.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._events import Event
from ..policies._registry import Count, registrations
from ._counters import Counters

__all__ = ["EVENT_METRICS", "MAX_DROPPED", "EventFeed", "touch_backends", "touch_service"]

MAX_DROPPED = 1024
"""Names of removed services whose late events an :class:`EventFeed` ignores (a call
outliving its service's drain by this many further removals is counted again)."""

_S = ("service",)

_GENERAL: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "meshlite_rejections_total": (
        "counter", "Calls a policy refused without running them, by policy and reason.",
        ("service", "policy", "reason")),
    "meshlite_backend_ejections_total": (
        "counter", "Times outlier detection ejected a backend.", ("service", "backend")),
    "meshlite_ejections_skipped_total": (
        "counter", "Ejections not made because max_ejection_percent was reached.",
        ("service", "backend")),
    "meshlite_panic_mode_entered_total": (
        "counter", "Times every backend was out and calls went to all of them.", _S),
    "meshlite_health_check_failures_total": (
        "counter", "Times active health checking marked a backend unhealthy.",
        ("service", "backend")),
    "meshlite_store_fallbacks_total": (
        "counter", "Policy decisions taken without the shared store (it did not answer), "
        "by policy and the store's on_error action.", ("service", "policy", "action")),
}
"""Metrics of the events no single policy owns (routing, the store, rejections)."""

Rule = Callable[[Any, Counters], None]


def _svc(e: Any) -> str:
    return e.service or ""


def _count(name: str, *fields: str) -> Rule:
    def rule(e: Any, c: Counters) -> None:
        c.add(name, (_svc(e), *(str(getattr(e, f, "") or "") for f in fields)))

    return rule


def _ignore(e: Any, c: Counters) -> None:
    return None


def _registered_rule(counts: tuple[Count, ...], gauges: frozenset[str]) -> Rule:
    """The rule a policy registration declares for one event."""
    if len(counts) == 1 and counts[0].amount is None:
        return _count(counts[0].metric, *counts[0].fields)

    def rule(e: Any, c: Counters) -> None:
        for count in counts:
            labels = (_svc(e), *(str(getattr(e, f, "") or "") for f in count.fields))
            amount = 1.0 if count.amount is None else float(getattr(e, count.amount))
            if count.metric in gauges:
                c.set(count.metric, labels, amount)
            else:
                c.add(count.metric, labels, amount)

    return rule


_POLICIES = list(registrations())
EVENT_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    **{m.name: (m.type, m.help, m.labels) for p in _POLICIES for m in p.metrics},
    **_GENERAL,
}
"""Every event-fed metric: ``{name: (type, help, label names)}`` (the policies' from
their registrations, ``meshlite/policies/_registry.py``)."""

_BY_BACKEND = tuple(name for name, (_, _, labels) in EVENT_METRICS.items()
                    if labels == ("service", "backend"))
"""The event-fed metrics of one backend of a service (ejections, health check
failures...)."""


def _backends_changed(e: Any, c: Counters) -> None:
    # A backend the service no longer has loses its series, as its endpoint's go:
    # with discovery replacing pods, one series per address ever ejected otherwise.
    # One it gains has its counters made at 0, as its first backends had.
    service = _svc(e)
    for address in e.removed:
        c.forget(_BY_BACKEND, (service, address))
    for name in c.per_backend.get(service, ()):
        for address in e.added:
            c.touch(name, (service, address))


def touch_backends(counters: Counters, service: Any) -> None:
    """Create at 0, for each backend of ``service``, the counters it can move, so
    ``rate()`` sees the first event: ejections with outlier detection, health-check
    failures with a health check (those of backends added later too)."""
    names = ((("meshlite_backend_ejections_total",)
              if service.outlier_detection is not None else ())
             + (("meshlite_health_check_failures_total",)
                if service.health_check is not None else ()))
    counters.per_backend[service.name] = names
    for name in names:
        for backend in service.backends:
            counters.touch(name, (service.name, backend.address))


# Counters that have only the service label, initialised to 0 for each service whose
# pipeline holds the policy kind, so rate() sees the first event.
_BY_KIND: dict[str, tuple[str, ...]] = {
    p.kind: tuple(m.name for m in p.metrics if m.zero) for p in _POLICIES}

_GAUGES = frozenset(m.name for p in _POLICIES for m in p.metrics if m.type == "gauge")
_RULES: dict[str, Rule] = {
    **{event: _registered_rule(counts, _GAUGES) for p in _POLICIES
       for event, counts in p.events.items() if counts},
    "CallRejected": _count("meshlite_rejections_total", "policy", "reason"),
    "BackendEjected": _count("meshlite_backend_ejections_total", "address"),
    "EjectionSkipped": _count("meshlite_ejections_skipped_total", "address"),
    "PanicModeEntered": _count("meshlite_panic_mode_entered_total"),
    "HealthCheckFailed": _count("meshlite_health_check_failures_total", "address"),
    "StoreFallback": _count("meshlite_store_fallbacks_total", "policy", "action"),
    "BackendsChanged": _backends_changed,
    "Event": _ignore,
}


def touch_service(counters: Counters, service: str, kinds: Iterable[str]) -> None:
    """Create at 0 the service-labelled counters of the policy kinds it uses."""
    for kind in kinds:
        for name in _BY_KIND.get(kind, ()):
            counters.touch(name, (service,))


class EventFeed:
    """The event hook that turns events into counters.

    Subscribe it once per policy object: a policy shared by two services' pipelines
    delivers each event to each subscription.

    Args:
        counters: Where to count; declared with :data:`EVENT_METRICS`.
    """

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self._rules: dict[type, Rule] = {}
        self.dropped: dict[str, None] = {}
        """Services whose series were dropped (a reload removed them), the last
        :data:`MAX_DROPPED` in order: their late events (a call that outlived the
        drain) are not counted, which would bring the series back."""

    def drop(self, service: str) -> None:
        """Count no more events of ``service`` (its series were dropped); the oldest
        name is forgotten past :data:`MAX_DROPPED`, so a process whose reloads keep
        naming new services does not keep every name it ever removed."""
        dropped = self.dropped
        dropped.pop(service, None)
        dropped[service] = None
        if len(dropped) > MAX_DROPPED:
            del dropped[next(iter(dropped))]

    def undrop(self, service: str) -> None:
        """Count the events of ``service`` again (a service of that name is back)."""
        self.dropped.pop(service, None)

    def __call__(self, event: Event, /) -> None:
        """Count ``event`` (the :class:`~meshlite.Hook` protocol)."""
        if event.service in self.dropped:
            return
        rule = self._rules.get(type(event))
        if rule is None:
            rule = self._rules[type(event)] = next(
                (_RULES[c.__name__] for c in type(event).__mro__ if c.__name__ in _RULES),
                _ignore)
        rule(event, self.counters)
