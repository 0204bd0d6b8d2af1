"""resilient(): one decorator that builds a pipeline in the recommended order.

The order, outermost first, and why (see docs/recommended-order.md):

1. ``Trace``: sees everything, including cache hits, fallbacks and rejections.
2. ``Fallback``: outside everything it can answer for, so an open circuit, a timeout
   or a rate-limit rejection all get the fallback answer.
3. ``Cache``: a hit spends no time budget, no retry budget and no rate-limit token;
   concurrent misses share one resilient call.
4. ``Timeout``: the total budget, so it bounds every attempt and every backoff sleep.
5. ``Retry``: outside the breaker, so each attempt is counted by the breaker, and an
   open circuit (never retried) stops the retry loop at once.
6. ``CircuitBreaker``: outside the limits, so a rejected call spends no rate-limit
   token or bulkhead slot, and a local rejection never counts as a downstream failure.
7. ``RateLimit``: waits for its slot before taking a bulkhead slot, so waiting never
   holds concurrency.
8. ``Bulkhead``: innermost, it bounds exactly the calls in flight downstream.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from ._errors import ConfigError
from ._pipeline import Pipeline
from ._policy import Decorated, Policy
from ._validate import at_least, fail, positive
from .policies._bulkhead import Bulkhead
from .policies._cache import Cache
from .policies._circuit_breaker import CircuitBreaker
from .policies._fallback import Fallback
from .policies._rate_limit import RateLimit
from .policies._retry import Retry
from .policies._timeout import Timeout
from .policies._trace import Trace

__all__ = ["build_resilient_pipeline", "resilient"]

P = ParamSpec("P")
T = TypeVar("T")
_MISSING: Any = object()


def _breaker(breaker: bool | Mapping[str, Any] | CircuitBreaker) -> CircuitBreaker | None:
    if breaker is False or breaker is None:
        return None
    if breaker is True:
        return CircuitBreaker()
    if isinstance(breaker, CircuitBreaker):
        return breaker
    if isinstance(breaker, Mapping):
        valid = [n for n in inspect.signature(CircuitBreaker).parameters if n != "self"]
        unknown = [str(k) for k in breaker if k not in valid]
        if unknown:
            raise ConfigError(
                f"resilient: breaker has unknown option(s) {', '.join(map(repr, unknown))}; "
                f"valid CircuitBreaker options: {', '.join(valid)}",
                policy="resilient",
            )
        return CircuitBreaker(**breaker)
    adopt = ("; for a pybreaker breaker, pass ml.CircuitBreaker.from_pybreaker(cb)"
             if type(breaker).__module__.partition(".")[0] == "pybreaker" else "")
    raise ConfigError(
        f"resilient: breaker must be True, False, a dict of CircuitBreaker options or a "
        f"CircuitBreaker, got {breaker!r}{adopt}",
        policy="resilient",
    )


def build_resilient_pipeline(
    *,
    timeout: float | None = None,
    retries: int | None = None,
    breaker: bool | Mapping[str, Any] | CircuitBreaker = False,
    rate: float | None = None,
    per: float = 1.0,
    cache_ttl: float | None = None,
    cache_maxsize: int = 1024,
    max_concurrent: int | None = None,
    fallback: Any = _MISSING,
    trace: bool = False,
    service: str | None = None,
) -> Pipeline:
    """Build the pipeline :func:`resilient` decorates with; see it for the arguments."""
    positive("resilient", "per", per)
    at_least("resilient", "cache_maxsize", cache_maxsize, 1)
    if not isinstance(trace, bool):
        fail("resilient", "trace", trace, "True or False")
    policies: list[Policy] = []
    if trace:
        policies.append(Trace())
    if fallback is not _MISSING:
        policies.append(Fallback(fallback))
    if cache_ttl is not None:
        policies.append(Cache(ttl=cache_ttl, maxsize=cache_maxsize))
    if timeout is not None:
        policies.append(Timeout(timeout))
    if retries is not None and at_least("resilient", "retries", retries, 0) > 0:
        policies.append(Retry(attempts=retries + 1))
    cb = _breaker(breaker)
    if cb is not None:
        policies.append(cb)
    if rate is not None:
        policies.append(RateLimit(rate=rate, per=per, mode="wait"))
    if max_concurrent is not None:
        policies.append(Bulkhead(max_concurrent=max_concurrent))
    return Pipeline(*policies, service=service)


@overload
def resilient(fn: Callable[P, T], /) -> Decorated[P, T]: ...


@overload
def resilient(
    fn: None = None,
    /,
    *,
    timeout: float | None = ...,
    retries: int | None = ...,
    breaker: bool | Mapping[str, Any] | CircuitBreaker = ...,
    rate: float | None = ...,
    per: float = ...,
    cache_ttl: float | None = ...,
    cache_maxsize: int = ...,
    max_concurrent: int | None = ...,
    fallback: Any = ...,
    trace: bool = ...,
    service: str | None = ...,
) -> Pipeline: ...


def resilient(fn: Any = None, /, **options: Any) -> Any:
    """Decorate a function with a pipeline built in the recommended order.

    ``@ml.resilient`` alone applies ``retries=2`` (three attempts) with the default
    transient-error predicate and backoff. Each argument adds one policy:

    Args:
        timeout: Total seconds for the whole call, retries included (``Timeout``).
        retries: Retries after the first attempt (``Retry(attempts=retries + 1)``).
        breaker: ``True`` for a default ``CircuitBreaker``, a dict of its options, or
            an instance.
        rate: Calls admitted per ``per`` seconds; callers wait for a slot (``RateLimit``).
        per: The period of ``rate`` in seconds.
        cache_ttl: Cache results for this many seconds (``Cache``), up to
            ``cache_maxsize`` entries.
        max_concurrent: At most this many calls in flight (``Bulkhead``).
        fallback: Return this value when the call fails in any way (``Fallback``).
        trace: Add an OpenTelemetry span per call (``Trace``).
        service: Service name recorded in contexts, events and errors.

    Returns:
        The decorated function (sync stays sync, async stays async), with the built
        pipeline as its ``.pipeline`` attribute. Called with options alone
        (``@ml.resilient(timeout=2.0)``), the built pipeline, which decorates.

    Raises:
        ConfigError: an argument is invalid.
    """
    if fn is not None:
        if options or not callable(fn):
            raise ConfigError(
                "resilient: pass options by keyword, e.g. @ml.resilient(timeout=2.0, retries=3)",
                policy="resilient",
            )
        return build_resilient_pipeline(retries=2)(fn)
    valid = inspect.signature(build_resilient_pipeline).parameters
    unknown = [name for name in options if name not in valid]
    if unknown:
        raise ConfigError(
            f"resilient: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(valid)}",
            policy="resilient",
        )
    return build_resilient_pipeline(**options)
