"""Event-fed metrics: what each policy and routing event adds to which counter.

Events are matched by class name (walking the class's bases), so this module needs
no import of the policies, and an event it does not know is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._events import Event
from ._metrics import Counters

__all__ = ["EVENT_METRICS", "EventFeed", "touch_service"]

_S = ("service",)

EVENT_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "meshlite_retries_total": (
        "counter", "Retries scheduled: attempts after the first.", _S),
    "meshlite_retries_exhausted_total": (
        "counter", "Calls whose last allowed attempt failed, by why no more were made.",
        ("service", "reason")),
    "meshlite_retry_budget_exhausted_total": (
        "counter", "Retries skipped because the retry budget was empty.", _S),
    "meshlite_rejections_total": (
        "counter", "Calls a policy refused without running them, by policy and reason.",
        ("service", "policy", "reason")),
    "meshlite_timeouts_total": ("counter", "Calls that ran past their Timeout.", _S),
    "meshlite_fallbacks_total": ("counter", "Calls the Fallback policy answered.", _S),
    "meshlite_circuit_breaker_transitions_total": (
        "counter", "Circuit breaker state changes, by the state entered.",
        ("service", "breaker", "state")),
    "meshlite_cache_hits_total": ("counter", "Calls a fresh cache entry answered.", _S),
    "meshlite_cache_misses_total": (
        "counter", "Cached calls no entry answered (the call ran or joined one running).", _S),
    "meshlite_cache_stale_served_total": (
        "counter", "Calls answered by a stale entry while it was refreshed.", _S),
    "meshlite_cache_refresh_failures_total": (
        "counter", "Background refreshes of stale cache entries that failed.", _S),
    "meshlite_rate_limit_waits_total": (
        "counter", "Calls that waited for a rate-limit slot before running.", _S),
    "meshlite_rate_limit_wait_seconds_total": (
        "counter", "Seconds calls spent waiting for rate-limit slots.", _S),
    "meshlite_hedges_total": (
        "counter", "Hedge attempts started, by reason (delay or error).", ("service", "reason")),
    "meshlite_faults_injected_total": (
        "counter", "Faults the FaultInjection policy injected, by kind.", ("service", "fault")),
    "meshlite_concurrency_limit": (
        "gauge", "The adaptive concurrency limit last set.", _S),
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
"""Every event-fed metric: ``{name: (type, help, label names)}``."""

# Counters that have only the service label, initialised to 0 for each service whose
# pipeline holds the policy kind, so rate() sees the first event.
_BY_KIND: dict[str, tuple[str, ...]] = {
    "retry": ("meshlite_retries_total", "meshlite_retry_budget_exhausted_total"),
    "timeout": ("meshlite_timeouts_total",),
    "fallback": ("meshlite_fallbacks_total",),
    "cache": ("meshlite_cache_hits_total", "meshlite_cache_misses_total",
              "meshlite_cache_stale_served_total", "meshlite_cache_refresh_failures_total"),
    "rate_limit": ("meshlite_rate_limit_waits_total", "meshlite_rate_limit_wait_seconds_total"),
}

Rule = Callable[[Any, Counters], None]


def _svc(e: Any) -> str:
    return e.service or ""


def _count(name: str, *fields: str) -> Rule:
    def rule(e: Any, c: Counters) -> None:
        c.add(name, (_svc(e), *(str(getattr(e, f, "") or "") for f in fields)))

    return rule


def _rate_limit_waited(e: Any, c: Counters) -> None:
    c.add("meshlite_rate_limit_waits_total", (_svc(e),))
    c.add("meshlite_rate_limit_wait_seconds_total", (_svc(e),), float(e.waited))


def _limit_changed(e: Any, c: Counters) -> None:
    c.set("meshlite_concurrency_limit", (_svc(e),), float(e.new))


def _ignore(e: Any, c: Counters) -> None:
    return None


_RULES: dict[str, Rule] = {
    "RetryScheduled": _count("meshlite_retries_total"),
    "RetriesExhausted": _count("meshlite_retries_exhausted_total", "reason"),
    "RetryBudgetExhausted": _count("meshlite_retry_budget_exhausted_total"),
    "CallRejected": _count("meshlite_rejections_total", "policy", "reason"),
    "TimedOut": _count("meshlite_timeouts_total"),
    "FallbackUsed": _count("meshlite_fallbacks_total"),
    "CircuitStateChanged": _count("meshlite_circuit_breaker_transitions_total", "name", "state"),
    "CacheHit": _count("meshlite_cache_hits_total"),
    "CacheMiss": _count("meshlite_cache_misses_total"),
    "CacheStaleServed": _count("meshlite_cache_stale_served_total"),
    "CacheRefreshFailed": _count("meshlite_cache_refresh_failures_total"),
    "RateLimitWaited": _rate_limit_waited,
    "HedgeStarted": _count("meshlite_hedges_total", "reason"),
    "FaultInjected": _count("meshlite_faults_injected_total", "fault"),
    "ConcurrencyLimitChanged": _limit_changed,
    "BackendEjected": _count("meshlite_backend_ejections_total", "address"),
    "EjectionSkipped": _count("meshlite_ejections_skipped_total", "address"),
    "PanicModeEntered": _count("meshlite_panic_mode_entered_total"),
    "HealthCheckFailed": _count("meshlite_health_check_failures_total", "address"),
    "StoreFallback": _count("meshlite_store_fallbacks_total", "policy", "action"),
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

    def __call__(self, event: Event, /) -> None:
        """Count ``event`` (the :class:`~meshlite.Hook` protocol)."""
        rule = self._rules.get(type(event))
        if rule is None:
            rule = self._rules[type(event)] = next(
                (_RULES[c.__name__] for c in type(event).__mro__ if c.__name__ in _RULES),
                _ignore)
        rule(event, self.counters)
