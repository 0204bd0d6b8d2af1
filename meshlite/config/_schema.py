"""The config schema: :class:`MeshConfig`, one msgspec model for the whole file.

Documented, with a complete example, in ``docs/config.md``. Structure and types
are checked here; values are checked by the objects built from them (policies,
backends, health checks, discovery providers), so each rule lives in one place.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ._inbound import InboundSection
from ._sections import (
    AdaptiveConcurrencySection,
    BulkheadSection,
    CacheSection,
    CircuitBreakerSection,
    FallbackSection,
    FaultInjectionSection,
    HedgeSection,
    RateLimitSection,
    RetrySection,
    Section,
    TimeoutSection,
    TraceSection,
)
from ._walk import read_bool

__all__ = [
    "AlertRuleSection",
    "AlertsSection",
    "AuditSection",
    "BackendSection",
    "DashboardSection",
    "HealthCheckSection",
    "HotReloadSection",
    "MeshConfig",
    "MetricsSection",
    "OutlierDetectionSection",
    "ServiceSection",
    "TLSSection",
    "TelemetrySection",
]


class BackendSection(Section, frozen=True):
    """A backend: ``"http://127.0.0.5:8000"`` or ``{url, weight, zone, metadata}``."""

    url: str
    weight: float | None = None
    zone: str | None = None
    metadata: dict[str, Any] | None = None

    _before = staticmethod(lambda data: data if isinstance(data, dict) else {"url": data})


class HealthCheckSection(Section, frozen=True):
    """``health_check:`` the arguments of ``ml.HttpHealthCheck`` (``true``: defaults)."""

    path: str | None = None
    interval: float | None = None
    timeout: float | None = None
    healthy_threshold: int | None = None
    unhealthy_threshold: int | None = None
    jitter: float | None = None


class OutlierDetectionSection(Section, frozen=True):
    """``outlier_detection:`` the arguments of ``ml.OutlierDetection``; ``false`` turns
    ejection off, leaving it out keeps the defaults."""

    consecutive_failures: int | None = None
    failure_rate: float | None = None
    failure_rate_window: int | None = None
    base_ejection_seconds: float | None = None
    max_ejection_seconds: float | None = None
    max_ejection_percent: float | None = None
    failure_on: list[str] | str | None = None


class TLSSection(Section, frozen=True):
    """``tls:`` the arguments of ``ml.TLS`` for ``https://`` backends; relative paths
    are relative to the config file."""

    verify: bool | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    key_password: str | None = None


def _switch(value: Any) -> Any:
    """``true`` is a section with its defaults, ``false`` no section (read as
    booleans are: ``"false"`` from an environment variable is ``false``)."""
    if isinstance(value, str):
        value = value if (found := read_bool(value)) is None else found
    if value is True:
        return {}
    return None if value is False else value


def _one_item(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


class ServiceSection(Section, frozen=True):
    """One service: backends, routing, health, and its policies (outermost first in
    the pipeline: trace, fallback, cache, timeout, retry, hedge, circuit_breaker,
    rate_limit, adaptive_concurrency, bulkhead, fault_injection)."""

    backends: list[BackendSection] = []  # noqa: RUF012 - msgspec copies defaults
    balancer: str | None = None
    trace: TraceSection | None = None
    fallback: FallbackSection | None = None
    cache: CacheSection | None = None
    timeout: TimeoutSection | None = None
    retry: RetrySection | None = None
    hedge: HedgeSection | None = None
    circuit_breaker: CircuitBreakerSection | None = None
    rate_limit: RateLimitSection | None = None
    adaptive_concurrency: AdaptiveConcurrencySection | None = None
    bulkhead: BulkheadSection | None = None
    fault_injection: FaultInjectionSection | None = None
    health_check: HealthCheckSection | None = None
    outlier_detection: OutlierDetectionSection | None = None
    depends_on: list[str] = []  # noqa: RUF012
    discovery: dict[str, Any] | None = None
    retry_non_idempotent: bool | None = None
    panic_mode: bool | None = None
    tls: TLSSection | None = None
    headers: dict[str, str] | None = None

    _field_hooks = {  # noqa: RUF012 - a class constant
        # `false` leaves any of these out (`null` too); `true` is one with its defaults
        **dict.fromkeys(("health_check", "outlier_detection", "circuit_breaker", "retry",
                         "adaptive_concurrency", "fallback", "cache", "timeout", "hedge",
                         "rate_limit", "bulkhead", "fault_injection"), _switch),
        "depends_on": _one_item,
        "backends": _one_item,
        "discovery": lambda value: {"type": value} if isinstance(value, str) else value,
    }


class TelemetrySection(Section, frozen=True):
    """``telemetry:`` the arguments of ``ml.telemetry.configure``."""

    service_name: str | None = None
    otlp_endpoint: str | None = None
    console: bool = False
    sample_ratio: float | None = None


def _enabled(data: Any) -> Any:
    return data if isinstance(data, dict) else {"enabled": data}


class DashboardSection(Section, frozen=True):
    """``dashboard:`` the arguments of ``mesh.serve_dashboard``, served while the mesh
    is open (``true``: on 127.0.0.1:8686)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8686
    token: str | dict[str, str] | None = None  # a string, {env: NAME} or {file: PATH}
    admin_token: str | dict[str, str] | None = None
    max_clients: int | None = None
    max_connections: int | None = None
    header_timeout: float | None = None
    max_header_bytes: int | None = None
    keep_alive: int | None = None

    _before = staticmethod(_enabled)


class AlertRuleSection(Section, frozen=True):
    """One alert rule: the arguments of ``ml.AlertRule``."""

    name: str
    condition: str
    threshold: float | None = None
    for_seconds: float | None = None
    resolve_seconds: float | None = None
    window: int | None = None
    min_requests: int | None = None
    service: str | None = None
    severity: str | None = None


class AlertsSection(Section, frozen=True):
    """``alerts:`` a list of rules, or ``{rules: [...], webhook, webhook_timeout}``
    (the arguments of the mesh's ``Alerts``)."""

    rules: list[AlertRuleSection] = []  # noqa: RUF012
    webhook: str | None = None
    webhook_timeout: float | None = None

    _before = staticmethod(lambda data: {"rules": data} if isinstance(data, list) else data)


class HotReloadSection(Section, frozen=True):
    """``hot_reload: true`` watches the file and applies each valid change."""

    enabled: bool = False
    # At most a day: the file watcher takes milliseconds as an unsigned 64-bit number
    # (a larger one failed the watch at start, and hot reload was off, silently).
    step_ms: Annotated[int, msgspec.Meta(ge=1, le=86_400_000)] = 30
    debounce_ms: Annotated[int, msgspec.Meta(ge=1, le=86_400_000)] = 400

    _before = staticmethod(_enabled)


class AuditSection(Section, frozen=True):
    """``audit:`` the file admin actions and config changes are recorded in
    (``ml.AuditLog``); a path, or ``{path: ...}``; relative to the config file."""

    path: str

    _before = staticmethod(lambda data: {"path": data} if isinstance(data, str) else data)


class MetricsSection(Section, frozen=True):
    """``metrics:`` how the mesh's metrics are exposed: ``service_label`` renames the
    ``service`` label (the Prometheus Operator adds a ``service`` label of its own)."""

    service_label: str = "service"


class MeshConfig(Section, frozen=True):
    """A whole config file (after ``${VAR}`` interpolation, the ``MESHLITE_ENV``
    profile and ``MESHLITE_*`` overrides)."""

    services: dict[str, ServiceSection] = {}  # noqa: RUF012
    telemetry: TelemetrySection | None = None
    dashboard: DashboardSection | None = None
    alerts: AlertsSection | None = None
    hot_reload: HotReloadSection = msgspec.field(default_factory=HotReloadSection)
    drain_timeout: float | None = None
    audit: AuditSection | None = None
    inbound: InboundSection | None = None
    metrics: MetricsSection | None = None
    _other_keys = ("profiles",)  # read before the schema (overlays), valid all the same
