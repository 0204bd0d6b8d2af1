"""Routing: backends, balancers, health checks, outlier detection and services.

Import these names from :mod:`meshlite` (``ml.Service``, ``ml.Backend``...); this
package also exposes the pieces a custom balancer or a dashboard needs
(:class:`Endpoint`, the snapshot records, the routing events).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from ._backend import Backend, BackendLike
from ._balancers import (
    BALANCERS,
    DEFAULT_BALANCER,
    Balancer,
    LeastRequests,
    P2CEwma,
    Random,
    RoundRobin,
    WeightedRoundRobin,
)
from ._endpoint import Endpoint
from ._events import (
    BackendEjected,
    BackendReturned,
    BackendsChanged,
    EjectionSkipped,
    HealthCheckFailed,
    HealthCheckRecovered,
    MeshClosedError,
    PanicModeEntered,
    PanicModeExited,
    ResponseStatusError,
)
from ._first_wave import DEFAULT_FIRST_ANSWER_WAIT_SECONDS
from ._health import HealthCheck, HealthChecker
from ._outlier import OutlierDetection, OutlierDetectionOptions
from ._ring_hash import RingHash
from ._service import DEFAULT_RETRY_ATTEMPTS, Lifecycle, Service

if TYPE_CHECKING:
    from .._http._probe import HttpHealthCheck
    from ._snapshot import BackendHealth, BackendSnapshot, ServiceHealth, ServiceSnapshot

# The snapshot records load on first use: building and calling a mesh needs none of
# them (start-up, docs/benchmarks.md).
_SNAPSHOT = dict.fromkeys(("BackendHealth", "BackendSnapshot", "ServiceHealth",
                           "ServiceSnapshot"), "._snapshot")
# HttpHealthCheck lives with the HTTP layer, which routing does not import; the name
# stays here for code that imports it from meshlite.routing.
if not TYPE_CHECKING:  # type checkers see the imports above, and no other name
    __getattr__, __dir__ = lazy_exports(
        __name__, {**_SNAPSHOT, "HttpHealthCheck": ".._http._probe"}, globals())

__all__ = [
    # services and backends
    "Service",
    "Backend",
    "BackendLike",
    "Endpoint",
    "Lifecycle",
    "DEFAULT_RETRY_ATTEMPTS",
    # balancers
    "Balancer",
    "BALANCERS",
    "DEFAULT_BALANCER",
    "RoundRobin",
    "WeightedRoundRobin",
    "Random",
    "LeastRequests",
    "P2CEwma",
    "DEFAULT_FIRST_ANSWER_WAIT_SECONDS",
    "RingHash",
    # health
    "OutlierDetection",
    "OutlierDetectionOptions",
    "HealthCheck",
    "HttpHealthCheck",
    "HealthChecker",
    # state views
    "ServiceHealth",
    "BackendHealth",
    "ServiceSnapshot",
    "BackendSnapshot",
    # events and errors
    "BackendEjected",
    "BackendReturned",
    "EjectionSkipped",
    "PanicModeEntered",
    "PanicModeExited",
    "HealthCheckFailed",
    "HealthCheckRecovered",
    "BackendsChanged",
    "ResponseStatusError",
    "MeshClosedError",
]
