"""meshlite: what a service-mesh sidecar gives a pod, for every Python service call.

Compose resilience policies into a pipeline (outermost first) and decorate
functions with it; sync functions stay sync, async ones stay async::

    import meshlite as ml

    pipeline = ml.Pipeline(
        ml.Timeout(2.0),
        ml.Retry(attempts=3, backoff=ml.backoff.exponential(initial=0.05, maximum=2.0)),
        ml.CircuitBreaker(failure_rate=0.5, window=100, min_calls=20),
    )

    @pipeline
    async def get_user(uid: int) -> dict: ...
"""

from typing import TYPE_CHECKING

from ._clock import SYSTEM_CLOCK, Clock, SystemClock
from ._context import CallContext, current_context, remaining
from ._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    MeshliteError,
    NoHealthyBackendError,
    RateLimitedError,
    RejectedError,
    TimeoutExceeded,
)
from ._events import Event, Hook, add_hook, remove_hook
from ._lazy import lazy_exports
from ._pipeline import Pipeline
from ._policy import AsyncHandler, Handler, Policy
from ._switches import is_testing, set_testing
from ._version import __version__

if TYPE_CHECKING:
    from . import asgi, backoff, config, discovery, state, telemetry
    from ._audit import AuditLog
    from ._gather import gather, gather_sync
    from ._mesh import Mesh
    from ._resilient import resilient
    from .config._events import ConfigReloaded, ConfigReloadFailed
    from .observability._dashboard import AlertRule
    from .observability._policy import Metrics
    from .policies._adaptive import AdaptiveConcurrency
    from .policies._bulkhead import Bulkhead
    from .policies._cache import Cache
    from .policies._circuit_breaker import CircuitBreaker
    from .policies._fallback import Fallback
    from .policies._fault import FaultInjection
    from .policies._hedge import Hedge
    from .policies._rate_limit import RateLimit
    from .policies._retry import Retry, RetryBudget, is_transient
    from .policies._timeout import Timeout
    from .policies._trace import Trace
    from .policies._validate_policy import Validate, ValidationError
    from .routing import (
        Backend,
        Balancer,
        HealthCheck,
        HttpHealthCheck,
        LeastRequests,
        MeshClosedError,
        OutlierDetection,
        P2CEwma,
        RingHash,
        RoundRobin,
        Service,
        WeightedRoundRobin,
    )
    from .routing._tls import TLS

# Everything but the engine loads on first use (each policy module on its first
# name), so that `import meshlite` costs the engine and its two dependencies only
# (docs/benchmarks.md, "Start-up").
_LAZY: dict[str, str] = {
    "gather": "._gather",
    "gather_sync": "._gather",
    "resilient": "._resilient",
    "AdaptiveConcurrency": ".policies._adaptive",
    "Bulkhead": ".policies._bulkhead",
    "Cache": ".policies._cache",
    "CircuitBreaker": ".policies._circuit_breaker",
    "Fallback": ".policies._fallback",
    "FaultInjection": ".policies._fault",
    "Hedge": ".policies._hedge",
    "RateLimit": ".policies._rate_limit",
    "Retry": ".policies._retry",
    "RetryBudget": ".policies._retry",
    "is_transient": ".policies._retry",
    "Timeout": ".policies._timeout",
    "Trace": ".policies._trace",
    "Validate": ".policies._validate_policy",
    "ValidationError": ".policies._validate_policy",
    "Mesh": "._mesh",
    "Backend": ".routing",
    "Balancer": ".routing",
    "HealthCheck": ".routing",
    "HttpHealthCheck": "._http._probe",
    "LeastRequests": ".routing",
    "MeshClosedError": ".routing",
    "OutlierDetection": ".routing",
    "P2CEwma": ".routing",
    "RingHash": ".routing",
    "RoundRobin": ".routing",
    "Service": ".routing",
    "WeightedRoundRobin": ".routing",
    "TLS": ".routing._tls",
    "AuditLog": "._audit",
    "ConfigReloaded": ".config._events",
    "ConfigReloadFailed": ".config._events",
    "AlertRule": ".observability._dashboard",
    "Metrics": ".observability._policy",
}
_LAZY_MODULES = frozenset({"asgi", "backoff", "config", "discovery", "state", "telemetry"})


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), _LAZY_MODULES)



__all__ = [
    # pipelines and the policy contract
    "Pipeline",
    "Policy",
    "Handler",
    "AsyncHandler",
    "CallContext",
    "current_context",
    "remaining",
    "resilient",
    # policies
    "Timeout",
    "Retry",
    "RetryBudget",
    "backoff",
    "telemetry",
    "CircuitBreaker",
    "RateLimit",
    "Bulkhead",
    "AdaptiveConcurrency",
    "Cache",
    "Fallback",
    "Hedge",
    "Trace",
    "FaultInjection",
    "Validate",
    "Metrics",
    "AlertRule",
    "AuditLog",
    "gather",
    "gather_sync",
    "is_transient",
    # services, routing, the mesh
    "Mesh",
    "Service",
    "Backend",
    "Balancer",
    "RoundRobin",
    "WeightedRoundRobin",
    "LeastRequests",
    "P2CEwma",
    "RingHash",
    "OutlierDetection",
    "HealthCheck",
    "HttpHealthCheck",
    "TLS",
    "config",
    "discovery",
    "state",
    "asgi",
    # errors
    "MeshliteError",
    "ConfigError",
    "RejectedError",
    "CircuitOpenError",
    "RateLimitedError",
    "BulkheadFullError",
    "TimeoutExceeded",
    "NoHealthyBackendError",
    "MeshClosedError",
    "ValidationError",
    # time, events, test switches
    "Clock",
    "SystemClock",
    "SYSTEM_CLOCK",
    "Event",
    "Hook",
    "add_hook",
    "remove_hook",
    "ConfigReloaded",
    "ConfigReloadFailed",
    "set_testing",
    "is_testing",
    "__version__",
]
