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

PYTEST_DONT_REWRITE: pytest rewrites the asserts of a package that registers a pytest
plugin (meshlite's testing kit does), and warns when that package was imported before
pytest started, an error under ``filterwarnings = error``; these words, read by pytest,
are what exempts the package (its asserts are not tests).
"""

from typing import TYPE_CHECKING

from ._clock import SYSTEM_CLOCK as SYSTEM_CLOCK
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._context import CallContext as CallContext
from ._context import current_context as current_context
from ._context import remaining as remaining
from ._errors import BulkheadFullError as BulkheadFullError
from ._errors import CircuitOpenError as CircuitOpenError
from ._errors import ConfigError as ConfigError
from ._errors import MeshliteError as MeshliteError
from ._errors import NoHealthyBackendError as NoHealthyBackendError
from ._errors import RateLimitedError as RateLimitedError
from ._errors import RejectedError as RejectedError
from ._errors import TimeoutExceeded as TimeoutExceeded
from ._events import CallRejected as CallRejected
from ._events import CircuitClosed as CircuitClosed
from ._events import CircuitHalfOpened as CircuitHalfOpened
from ._events import CircuitOpened as CircuitOpened
from ._events import CircuitStateChanged as CircuitStateChanged
from ._events import Event as Event
from ._events import FallbackUsed as FallbackUsed
from ._events import Hook as Hook
from ._events import RetriesExhausted as RetriesExhausted
from ._events import RetryBudgetExhausted as RetryBudgetExhausted
from ._events import RetryScheduled as RetryScheduled
from ._events import TimedOut as TimedOut
from ._events import add_hook as add_hook
from ._events import remove_hook as remove_hook
from ._lazy import declared_exports
from ._pipeline import Pipeline as Pipeline
from ._policy import AsyncHandler as AsyncHandler
from ._policy import Handler as Handler
from ._policy import Policy as Policy
from ._switches import is_testing as is_testing
from ._switches import set_testing as set_testing
from ._version import __version__ as __version__

# Everything below loads on first use (each module on its first name), so that
# `import meshlite` costs the engine and its two dependencies only (docs/benchmarks.md,
# "Start-up"). This block is the one declaration of those names: type checkers read
# it, and `declared_exports` reads it to know where each name lives.
if TYPE_CHECKING:
    from . import asgi as asgi
    from . import backoff as backoff
    from . import config as config
    from . import discovery as discovery
    from . import state as state
    from . import telemetry as telemetry
    from ._audit import AuditLog as AuditLog
    from ._gather import gather as gather
    from ._gather import gather_sync as gather_sync
    from ._http._probe import HttpHealthCheck as HttpHealthCheck
    from ._resilient import resilient as resilient
    from .config._events import ConfigReloaded as ConfigReloaded
    from .config._events import ConfigReloadFailed as ConfigReloadFailed
    from .discovery._provider import DiscoveryFailed as DiscoveryFailed
    from .discovery._provider import DiscoveryRecovered as DiscoveryRecovered
    from .mesh._mesh import Mesh as Mesh
    from .observability._dashboard import AlertRule as AlertRule
    from .observability._dashboard._rules import AlertFired as AlertFired
    from .observability._dashboard._rules import AlertResolved as AlertResolved
    from .observability._policy import Metrics as Metrics
    from .policies._adaptive import AdaptiveConcurrency as AdaptiveConcurrency
    from .policies._adaptive import ConcurrencyLimitChanged as ConcurrencyLimitChanged
    from .policies._bulkhead import Bulkhead as Bulkhead
    from .policies._cache import Cache as Cache
    from .policies._cache._options import CacheHit as CacheHit
    from .policies._cache._options import CacheMiss as CacheMiss
    from .policies._cache._options import CacheRefreshFailed as CacheRefreshFailed
    from .policies._cache._options import CacheStaleServed as CacheStaleServed
    from .policies._circuit_breaker import CircuitBreaker as CircuitBreaker
    from .policies._fallback import Fallback as Fallback
    from .policies._fault import FaultInjected as FaultInjected
    from .policies._fault import FaultInjection as FaultInjection
    from .policies._hedge import Hedge as Hedge
    from .policies._hedge import HedgeStarted as HedgeStarted
    from .policies._rate_limit import RateLimit as RateLimit
    from .policies._rate_limit._options import RateLimitWaited as RateLimitWaited
    from .policies._retry import Retry as Retry
    from .policies._retry import RetryBudget as RetryBudget
    from .policies._retry import is_transient as is_transient
    from .policies._timeout import Timeout as Timeout
    from .policies._trace import Trace as Trace
    from .policies._validate_policy import Validate as Validate
    from .policies._validate_policy import ValidationError as ValidationError
    from .policies._validate_policy import ValidationFailed as ValidationFailed
    from .routing import Backend as Backend
    from .routing import Balancer as Balancer
    from .routing import HealthCheck as HealthCheck
    from .routing import LeastRequests as LeastRequests
    from .routing import MeshClosedError as MeshClosedError
    from .routing import OutlierDetection as OutlierDetection
    from .routing import P2CEwma as P2CEwma
    from .routing import RingHash as RingHash
    from .routing import RoundRobin as RoundRobin
    from .routing import Service as Service
    from .routing import WeightedRoundRobin as WeightedRoundRobin
    from .routing._events import BackendEjected as BackendEjected
    from .routing._events import BackendReturned as BackendReturned
    from .routing._events import BackendsChanged as BackendsChanged
    from .routing._events import EjectionSkipped as EjectionSkipped
    from .routing._events import HealthCheckFailed as HealthCheckFailed
    from .routing._events import HealthCheckRecovered as HealthCheckRecovered
    from .routing._events import PanicModeEntered as PanicModeEntered
    from .routing._events import PanicModeExited as PanicModeExited
    from .routing._tls import TLS as TLS
    from .state._base import StoreFallback as StoreFallback
    from .state._base import StoreRecovered as StoreRecovered
    from .state._base import StoreUnavailable as StoreUnavailable

# Type checkers see neither __getattr__ nor the computed __all__ (which they would read
# as empty): to them the package has the names re-exported above (`X as X`) and no
# other, so a misspelt one is an error, not an Any, and those names are what
# `from meshlite import *` gives them, as __all__ does at run time.
if not TYPE_CHECKING:
    __getattr__, __dir__, __all__ = declared_exports(__name__, __file__, globals())
