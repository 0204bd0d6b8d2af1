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

from typing import TYPE_CHECKING, Any

from . import backoff
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
from ._gather import gather, gather_sync
from ._pipeline import Pipeline
from ._policy import AsyncHandler, Handler, Policy
from ._resilient import resilient
from ._switches import is_testing, set_testing
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

if TYPE_CHECKING:
    from . import config, discovery, state, telemetry
    from ._audit import AuditLog
    from ._mesh import Mesh
    from .config._events import ConfigReloaded, ConfigReloadFailed
    from .observability._dashboard import AlertRule
    from .observability._policy import Metrics
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

# The mesh, routing, config, telemetry and the rest load on first use, so that
# `import meshlite` costs only the policies (docs/benchmarks.md, "Start-up").
_LAZY: dict[str, str] = {
    "Mesh": "._mesh",
    "Backend": ".routing",
    "Balancer": ".routing",
    "HealthCheck": ".routing",
    "HttpHealthCheck": ".routing",
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
_LAZY_MODULES = frozenset({"config", "discovery", "state", "telemetry"})


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY_MODULES:
        value: Any = importlib.import_module(f".{name}", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module 'meshlite' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

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
