"""The policy registry: each policy declares here, in one entry, its kind (its name in
config files), its class, its public names and the metrics its events feed.

An entry names modules and classes as text, so reading the registry imports no
policy: config imports a policy when a file uses it, and the metrics feed matches
events by class name. A kind, a metric or an event registered twice raises
``ValueError`` when this module is imported; ``tests/policies/test_registry.py``
fails when a policy, one of its events, its config section or its export is
missing from the registry (docs/adding-a-policy.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Count", "Metric", "PolicyRegistration", "policy_class", "register",
           "registrations", "unregister"]

_SVC = ("service",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """A metric a policy's events feed.

    Attributes:
        name: The Prometheus name (``meshlite_<what>_total`` for counters).
        type: ``"counter"`` or ``"gauge"``.
        help: One sentence for the exposition's HELP line.
        labels: The label names; the first is always ``service``.
        zero: Create it at 0 for each service whose pipeline holds the policy (only
            for metrics labelled by service alone), so ``rate()`` sees the first event.
    """

    name: str
    type: Literal["counter", "gauge"] = "counter"
    help: str
    labels: tuple[str, ...] = _SVC
    zero: bool = False


@dataclass(frozen=True, slots=True)
class Count:
    """What one event does to one metric: add 1 (or the event's ``amount`` field) to a
    counter, or set a gauge to ``amount``, labelled by the event's service then by
    the event's ``fields``."""

    metric: str
    fields: tuple[str, ...] = ()
    amount: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRegistration:
    """One policy's declaration.

    Attributes:
        kind: The policy's ``kind``: its events' and errors' ``policy``, and its
            section's name in config files.
        module: The module defining it, relative to ``meshlite`` (``.policies._retry``).
        exports: Its public names in ``meshlite``, the policy class first.
        config: Whether config files can use it (a section in ``config/_sections.py``).
        metrics: The metrics its events feed.
        events: Each event class it defines or emits, by name, and what the event
            counts (``()``: nothing).
    """

    kind: str
    module: str
    exports: tuple[str, ...]
    config: bool = True
    metrics: tuple[Metric, ...] = ()
    events: Mapping[str, tuple[Count, ...]] = field(default_factory=dict)


_REGISTRY: dict[str, PolicyRegistration] = {}


def register(entry: PolicyRegistration) -> PolicyRegistration:
    """Add ``entry`` to the registry.

    Raises:
        ValueError: its kind, one of its exports, metrics or events is registered
            already, or one of its events counts a metric no entry declares.
    """
    taken = {
        "kind": {e.kind for e in _REGISTRY.values()},
        "export": {n for e in _REGISTRY.values() for n in e.exports},
        "metric": {m.name for e in _REGISTRY.values() for m in e.metrics},
        "event": {n for e in _REGISTRY.values() for n in e.events},
    }
    mine = {"kind": [entry.kind], "export": list(entry.exports),
            "metric": [m.name for m in entry.metrics], "event": list(entry.events)}
    for what, names in mine.items():
        twice = sorted({n for n in names if n in taken[what] or names.count(n) > 1})
        if twice:
            raise ValueError(f"policy {entry.kind!r}: {what} {', '.join(twice)} "
                             "registered twice")
    declared = taken["metric"] | set(mine["metric"])
    unknown = sorted({c.metric for counts in entry.events.values() for c in counts
                      if c.metric not in declared})
    if unknown or not entry.exports:
        raise ValueError(f"policy {entry.kind!r}: counts undeclared metrics {unknown} "
                         "or exports nothing")
    _REGISTRY[entry.kind] = entry
    return entry


def unregister(kind: str) -> None:
    """Remove a registration (tests that register a policy of their own)."""
    del _REGISTRY[kind]


def registrations() -> Iterator[PolicyRegistration]:
    """Every registration, in the order registered."""
    return iter(list(_REGISTRY.values()))


def policy_class(kind: str) -> Any:
    """The class of the policy registered as ``kind``, imported on first use.

    Raises:
        KeyError: no policy is registered as ``kind``.
    """
    entry = _REGISTRY[kind]
    return getattr(importlib.import_module(entry.module, "meshlite"), entry.exports[0])


def _metric(name: str, help: str, *labels: str, zero: bool = False) -> Metric:
    return Metric(name=f"meshlite_{name}", help=help, labels=("service", *labels), zero=zero)


# The built-in policies, in the recommended pipeline order (outermost first).
register(PolicyRegistration(kind="trace", module=".policies._trace", exports=("Trace",)))
register(PolicyRegistration(
    kind="fallback", module=".policies._fallback", exports=("Fallback",),
    metrics=(_metric("fallbacks_total", "Calls the Fallback policy answered.", zero=True),),
    events={"FallbackUsed": (Count("meshlite_fallbacks_total"),)}))
register(PolicyRegistration(
    kind="cache", module=".policies._cache", exports=("Cache",),
    metrics=(
        _metric("cache_hits_total", "Calls a fresh cache entry answered.", zero=True),
        _metric("cache_misses_total", "Cached calls no entry answered (the call ran or "
                "joined one running).", zero=True),
        _metric("cache_stale_served_total", "Calls answered by a stale entry while it was "
                "refreshed.", zero=True),
        _metric("cache_refresh_failures_total", "Refreshes of stale cache entries that "
                "failed (in the background, or inline for a sync call).", zero=True),
    ),
    events={"CacheHit": (Count("meshlite_cache_hits_total"),),
            "CacheMiss": (Count("meshlite_cache_misses_total"),),
            "CacheStaleServed": (Count("meshlite_cache_stale_served_total"),),
            "CacheRefreshFailed": (Count("meshlite_cache_refresh_failures_total"),)}))
register(PolicyRegistration(
    kind="timeout", module=".policies._timeout", exports=("Timeout",),
    metrics=(_metric("timeouts_total", "Calls that ran past their Timeout.", zero=True),),
    events={"TimedOut": (Count("meshlite_timeouts_total"),)}))
register(PolicyRegistration(
    kind="retry", module=".policies._retry", exports=("Retry", "RetryBudget", "is_transient"),
    metrics=(
        _metric("retries_total", "Retries scheduled: attempts after the first.", zero=True),
        _metric("retries_exhausted_total", "Calls whose last allowed attempt failed, by why "
                "no more were made.", "reason"),
        _metric("retry_budget_exhausted_total", "Retries skipped because the retry budget "
                "was empty.", zero=True),
    ),
    events={"RetryScheduled": (Count("meshlite_retries_total"),),
            "RetriesExhausted": (Count("meshlite_retries_exhausted_total", ("reason",)),),
            "RetryBudgetExhausted": (Count("meshlite_retry_budget_exhausted_total"),)}))
register(PolicyRegistration(
    kind="hedge", module=".policies._hedge", exports=("Hedge",),
    metrics=(_metric("hedges_total", "Hedge attempts started, by reason (delay or error).",
                     "reason"),),
    events={"HedgeStarted": (Count("meshlite_hedges_total", ("reason",)),)}))
register(PolicyRegistration(
    kind="circuit_breaker", module=".policies._circuit_breaker", exports=("CircuitBreaker",),
    metrics=(_metric("circuit_breaker_transitions_total", "Circuit breaker state changes, "
                     "by the state entered.", "breaker", "state"),),
    events={"CircuitStateChanged": (Count("meshlite_circuit_breaker_transitions_total",
                                          ("name", "state")),),
            "CircuitOpened": (), "CircuitHalfOpened": (), "CircuitClosed": ()}))
register(PolicyRegistration(
    kind="rate_limit", module=".policies._rate_limit", exports=("RateLimit",),
    metrics=(
        _metric("rate_limit_waits_total", "Calls that waited for a rate-limit slot before "
                "running.", zero=True),
        _metric("rate_limit_wait_seconds_total", "Seconds calls spent waiting for "
                "rate-limit slots.", zero=True),
    ),
    events={"RateLimitWaited": (Count("meshlite_rate_limit_waits_total"),
                                Count("meshlite_rate_limit_wait_seconds_total",
                                      amount="waited"))}))
register(PolicyRegistration(
    kind="adaptive_concurrency", module=".policies._adaptive",
    exports=("AdaptiveConcurrency",),
    metrics=(Metric(name="meshlite_concurrency_limit", type="gauge",
                    help="The adaptive concurrency limit last set."),),
    events={"ConcurrencyLimitChanged": (Count("meshlite_concurrency_limit", amount="new"),)}))
register(PolicyRegistration(kind="bulkhead", module=".policies._bulkhead",
                            exports=("Bulkhead",)))
register(PolicyRegistration(
    kind="fault_injection", module=".policies._fault", exports=("FaultInjection",),
    metrics=(_metric("faults_injected_total", "Faults the FaultInjection policy injected, "
                     "by kind.", "fault"),),
    events={"FaultInjected": (Count("meshlite_faults_injected_total", ("fault",)),)}))
register(PolicyRegistration(
    kind="validate", module=".policies._validate_policy",
    exports=("Validate", "ValidationError"), config=False,
    events={"ValidationFailed": ()}))
