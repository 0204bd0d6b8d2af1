"""Service: a named set of backends, a balancer, health state and a pipeline.

Its other parts are mixins: ``_chains.py``, ``_backend_set.py``, ``_rotation.py``
and ``_first_wave.py``; its arguments are checked in ``_service_checks.py``.
"""

from __future__ import annotations

import contextlib
import math
import random as _random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from .._arguments import explained
from .._clock import SYSTEM_CLOCK, Clock
from .._context import CallContext
from .._errors import TimeoutExceeded
from .._events import EventHooks
from .._fork import after_fork_in_child, fork_safe
from .._inflight import calls_list
from .._pipeline import Pipeline
from .._policy import AsyncHandler, Handler, Policy
from .._validate import fail, optional_clock, optional_random
from ..policies._trace import Trace
from . import _ring_hash  # noqa: F401  (registers "ring_hash" among the balancer names)
from ._backend import Backend, BackendLike, as_backends
from ._backend_set import BackendSet
from ._balancers import DEFAULT_BALANCER, Balancer, make_balancer
from ._chains import Chains
from ._endpoint import Endpoint
from ._first_wave import FirstWave
from ._health import HealthCheck, HealthChecker
from ._http_pool import check_http_pool
from ._outlier import OutlierDetection, backend_failure
from ._rotation import Rotation
from ._service_checks import (
    DEFAULT_RETRY_ATTEMPTS,
    NAME,
    Lifecycle,
    check_arguments,
    check_component,
    default_pipeline,
    service_names,
)
from ._tls import TLS, Headers, build_ssl_context, check_headers, check_tls

if TYPE_CHECKING:
    import ssl

__all__ = ["DEFAULT_RETRY_ATTEMPTS", "Lifecycle", "Service", "check_component",
           "override_service"]


@explained
class Service(Chains, BackendSet, Rotation, FirstWave):
    """A named service: its backends, how to balance and check them, and the pipeline
    every call to it runs through.

    Args:
        name: The service's name (letters, digits, ``.``, ``_``, ``-``); mesh calls
            and HTTP clients use it, and for HTTP it is the URL host of requests.
        backends: Backends or their addresses (or one).
        balancer: A balancer name (``"p2c_ewma"``, ``"round_robin"``,
            ``"weighted_round_robin"``, ``"random"``, ``"least_requests"``,
            ``"ring_hash"``) or a balancer object (``ml.RingHash(header="x-user")``).
        pipeline: The policies every call runs through, outermost first; the routing
            step runs innermost, once per attempt. ``None`` means
            ``Pipeline(Retry(attempts=2))``; pass ``ml.Pipeline()`` for none at all.
        health_check: An ``HttpHealthCheck`` or ``HealthCheck`` run while the mesh is
            open, or None.
        outlier_detection: ``OutlierDetection`` settings (``...``, the default, means
            ``OutlierDetection()``), or None to never eject.
        depends_on: Names of services this one calls; the mesh starts those first.
        retry_non_idempotent: HTTP: also retry POST and PATCH requests that carry no
            ``Idempotency-Key`` header.
        panic_mode: When every backend is out, send to all of them (True, as Envoy)
            instead of failing with ``NoHealthyBackendError``.
        http_pool: Keyword arguments for each backend's ``httpx`` transport
            (``limits=httpx.Limits(...)``, ``http2=True``, ``verify=...``).
        tls: ``ml.TLS(...)`` settings for ``https://`` backends: verification, a CA
            bundle, a client certificate for mutual TLS. Built into one
            ``ssl.SSLContext`` on first use, shared by every backend's transport
            and the HTTP health check. Not together with ``verify``/``cert`` in
            ``http_pool``.
        headers: Static headers (``{"Authorization": "Bearer ..."}``) added to every
            routed HTTP request and health probe that does not set them itself;
            their values never appear in reprs, errors, events or snapshots.
        trace: Give each call an OpenTelemetry span (kind ``INTERNAL``, with one
            ``CLIENT`` child per attempt) unless the pipeline has a ``Trace`` of its
            own. A no-op until a tracer provider is configured
            (``ml.telemetry.configure``); ``False`` skips even that.
        clock: Clock for latency, ejection and health timing (tests pass a FakeClock).
        random: Random source of the balancer.

    Raises:
        ConfigError: a bad argument, or two backends with the same address.
    """

    tls: TLS | None
    _headers: Headers

    def __init__(
        self,
        name: str,
        backends: BackendLike | Iterable[BackendLike] = (),
        balancer: str | Balancer = DEFAULT_BALANCER,
        pipeline: Policy | None = None,
        health_check: HealthCheck | None = None,
        outlier_detection: OutlierDetection | EllipsisType | None = ...,
        depends_on: Iterable[str] = (),
        *,
        retry_non_idempotent: bool = False,
        panic_mode: bool = True,
        http_pool: Mapping[str, Any] | None = None,
        tls: TLS | None = None,
        headers: Mapping[str, str] | None = None,
        trace: bool = True,
        clock: Clock | None = None,
        random: _random.Random | None = None,
    ) -> None:
        if not isinstance(name, str) or not NAME.match(name):
            fail("Service", "name", name, "a name of letters, digits, '.', '_' or '-'")
        owner = f"Service {name!r}"
        clock, random = optional_clock(owner, clock), optional_random(owner, random)
        outlier_detection = check_arguments(owner, pipeline, health_check, outlier_detection,
                                            retry_non_idempotent, panic_mode)
        self.name = name
        self.balancer: Balancer = make_balancer(balancer, owner, random)
        self.pipeline: Policy = default_pipeline() if pipeline is None else pipeline
        self.health_check = health_check
        self.outlier_detection = outlier_detection
        self.depends_on = service_names(owner, depends_on)
        self.retry_non_idempotent = retry_non_idempotent
        self.panic_mode = panic_mode
        self.http_pool: dict[str, Any] = check_http_pool(owner, http_pool)
        self.tls = check_tls(owner, tls, self.http_pool)
        self._headers = check_headers(owner, headers)
        self.caller: Callable[[], str | None] = _no_caller
        """The calling mesh's service name, sent with each routed request (the mesh
        that registers this service sets it)."""
        self._ssl: ssl.SSLContext | None = None
        self._open_in: Callable[[], Any] = _no_mesh
        """The mesh that last opened with this service (one with components), weakly:
        a mesh opening with it, or registering it while open, checks that no other
        open mesh has it."""
        self.hooks = EventHooks()
        self._explicit_clock = clock is not None or (
            outlier_detection is not None and outlier_detection.clock is not None)
        fallback = outlier_detection.clock if outlier_detection is not None else None
        self.clock: Clock = clock or fallback or SYSTEM_CLOCK
        self._lock = fork_safe(threading.Lock())
        self._endpoints: tuple[Endpoint, ...] = ()
        self._available: tuple[Endpoint, ...] = ()
        self._next_change = math.inf
        self._panic = False
        self._install(as_backends(backends, owner), owner)
        after_fork_in_child(self)  # BackendSet.after_fork
        if not isinstance(trace, bool):
            fail(owner, "trace", trace, "True or False")
        self._call_span = Trace(span_kind=SpanKind.INTERNAL) if trace else None
        self._ahandler: AsyncHandler
        self._calls = calls_list()
        """A mesh's calls in flight on this service, whole (a retry's backoff, a wait
        for a rate limit or a bulkhead included): the mesh's dispatch counts them
        here, and a service a reload retired drains until none is left."""
        self._handler: Handler | None = None
        self._recompile(())
        self.components: list[Lifecycle] = []
        """Lifecycle components (``async start()``/``async stop()``) the mesh runs."""
        if health_check is not None:
            self.components.append(HealthChecker(self, health_check.for_service(self),
                                                 self.clock, random))

    def after_fork(self) -> None:
        """In a forked child: the parent's calls and attempts in flight are not
        counted (they never end here)."""
        super().after_fork()
        self._calls = calls_list()

    # -- introspection --------------------------------------------------------

    @property
    def panic(self) -> bool:
        """Whether every backend is out and calls go to all of them (panic mode)."""
        self._due()
        return self._panic

    @property
    def header_names(self) -> tuple[str, ...]:
        """The names of the static ``headers`` (their values are never exposed)."""
        return tuple(name for name, _ in self._headers)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of this service's HTTP transports, built from ``tls`` on
        first use (None without ``tls``, for httpx's default).

        Raises:
            ConfigError: a file of ``tls`` could not be loaded (naming the field).
        """
        if self.tls is None:
            return None
        context = self._ssl
        if context is None:
            with self._lock:
                context = self._ssl
                if context is None:
                    context = self._ssl = build_ssl_context(self.tls, f"Service {self.name!r}")
        return context

    # -- what the mesh's config changes a service through (not public API) --------

    def attach(self, component: Lifecycle) -> None:
        """Have the mesh start ``component`` (``async start()``/``async stop()``) with
        this service, after the services it depends on, and before the service's
        health check (stopped after it): the check's first round, which the mesh's
        start waits for, then probes the backends a discovery component has just
        resolved, not the ones it replaces."""
        component = check_component(f"Service {self.name!r}", component)
        at = next((i for i, c in enumerate(self.components) if isinstance(c, HealthChecker)),
                  len(self.components))
        self.components.insert(at, component)

    def _use_clock(self, clock: Clock) -> None:
        """Adopt the mesh's clock, unless this service was given one."""
        if self._explicit_clock or clock is self.clock:
            return
        self.clock = clock
        for e in self._endpoints:
            e._clock = clock
            e._stamp = e._busy_from = clock.monotonic()
        for c in self.components:
            if isinstance(c, HealthChecker):
                c.clock = clock

    # -- routing (called by the routing handler) ------------------------------

    def _choose(self, ctx: CallContext) -> Endpoint:
        candidates: Sequence[Endpoint] = self._available
        # No ejection to end (the usual case): no clock read.
        if self._next_change != math.inf and self.clock.monotonic() >= self._next_change:
            candidates = self._due()
        if not candidates:
            raise self._no_backend()
        tried = ctx.tried
        if tried is not None:  # a retry, or a hedged call: its picks are recorded
            chosen = self._choose_untried(candidates, tried, ctx)
            tried.append(chosen.backend)  # (a hedge racing this one avoids it too)
            return chosen
        if self._cold:  # a backend has not answered yet: one attempt at a time there
            return self._choose_warming(candidates, ctx)  # (_first_wave.py)
        if len(candidates) == 1:
            return candidates[0]
        return self.balancer.pick(candidates, ctx)

    def _choose_untried(self, candidates: Sequence[Endpoint], tried: list[Backend],
                        ctx: CallContext) -> Endpoint:
        # A retry takes an endpoint its call has not tried while there is one. The
        # balancer picks among all candidates first and the tried ones are dropped
        # only when it chose one of them, so among n backends a retry costs O(1),
        # not a scan of all n (expected). With at most one untried candidate that
        # one is taken without a pick, so a round robin's turn is not spent on a
        # tried one.
        if tried:
            if not self._cold and len(candidates) > len(tried) + 1:
                chosen = self.balancer.pick(candidates, ctx)
                if chosen.backend not in tried:
                    return chosen
            candidates = [e for e in candidates if e.backend not in tried] or candidates
        if self._cold:
            return self._choose_warming(candidates, ctx)
        if len(candidates) == 1:
            return candidates[0]
        return self.balancer.pick(candidates, ctx)

    def _failed(self, endpoint: Endpoint, start: float, error: Exception,
                ctx: CallContext) -> None:
        ctx.last_error = error
        if not backend_failure(error) or (
                ctx.deadline is not None and ctx.out_of_time() == "caller"):
            # A configuration error or a rejection (this process's, never the
            # backend's), or cut by the caller's time (its wire timeout).
            endpoint.abandoned(start)
            return
        endpoint.failed(start)
        detector = self.outlier_detection
        if detector is not None:
            reason = detector.failed(endpoint, error)
            if reason is not None:
                self._eject(endpoint, reason)

    def _interrupted(self, endpoint: Endpoint, start: float, ctx: CallContext) -> None:
        # Cancelled at a deadline of the call's own pipeline: the backend was too
        # slow for the service's budget, which is its failure. Cut by the deadline
        # the caller handed down (a client's budget) or cancelled for any other
        # reason: it says nothing about the backend (see CallContext.out_of_time).
        if ctx.deadline is not None and ctx.out_of_time() == "own":
            error = TimeoutExceeded(f"attempt on {endpoint.address} ran past the deadline",
                                    service=self.name, policy="routing")
            with contextlib.suppress(Exception):  # (OutlierDetection's failure_on
                self._failed(endpoint, start, error, ctx)  # raising: cancelled still)
        else:
            endpoint.abandoned(start)

    def __repr__(self) -> str:
        extra = f", tls={self.tls!r}" if self.tls is not None else ""
        if self._headers:  # values are secrets: names only
            extra += ", headers={" + ", ".join(f"{n!r}: '***'" for n, _ in self._headers) + "}"
        return (f"Service({self.name!r}, backends={[e.address for e in self._endpoints]!r}, "
                f"balancer={getattr(self.balancer, 'name', self.balancer)!r}{extra})")


def _no_caller() -> str | None:
    return None


def _no_mesh() -> Any:
    return None


def override_service(name: str, fake: Any) -> Service | None:
    """The service a ``mesh.override(name, fake)`` routes to, or None when ``fake`` is
    used as is (an httpx transport, or an object passed in place of a backend).

    A Service is used as given; backends (an address, a Backend, a list of them, or
    an object with a ``.url`` such as ``FakeBackend``) become a plain service: round
    robin, no policies, no ejection, so tests see every call as it is.
    """
    if isinstance(fake, Service):
        return fake
    url = getattr(fake, "url", None)
    if isinstance(url, str):
        fake = url
    if isinstance(fake, str | Backend):
        fake = [fake]
    if not (isinstance(fake, list | tuple) and all(isinstance(b, str | Backend) for b in fake)):
        return None
    return Service(name, fake, balancer="round_robin", pipeline=Pipeline(),
                   outlier_detection=None)
