"""The routing handler: the innermost handler of every service's pipeline.

Policies wrap it and know nothing of routing; it knows nothing of HTTP. For each
attempt it picks a backend (avoiding those this call already tried), calls
``ctx.fn(backend, *ctx.args, **ctx.kwargs)``, measures the latency, and feeds the
endpoint's statistics and outlier detection. Failures are reported by raising, so
retry and circuit breakers above see them.

An attempt is a later one when ``ctx.backend`` is already set: by an earlier
attempt on this context (retry), or on the context it was copied from (hedge).
Keys it uses in ``ctx.extras`` (created then): ``"tried"`` (backends of earlier
attempts), ``"last_error"`` (the last attempt's error, when extras exist) and
``"no_resend"`` (set by a caller, such as the HTTP transport after it sent a
non-idempotent request: a later attempt refuses instead of sending again).

Attempt latencies go to the service's ``_observe_attempt`` (see
:data:`OBSERVE_ATTEMPT`) when a mesh with metrics set one: a function of the
endpoint and the attempt's start time, called after each attempt that reached a
backend, success or failure.
"""

from __future__ import annotations

import inspect
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .._context import CallContext
from .._errors import RejectedError, TimeoutExceeded
from .._policy import AsyncHandler, Handler
from ..telemetry._spans import attempt_span

if TYPE_CHECKING:
    from ._backend import Endpoint
    from ._service import Service

__all__ = ["OBSERVE_ATTEMPT", "ResendRefused", "async_route", "prepare_retry", "sync_route"]

OBSERVE_ATTEMPT = "_observe_attempt"
"""The service attribute holding the attempt observer (``None``: no metrics). Read
per attempt, so a mesh can set it after the handlers were compiled."""


class ResendRefused(RejectedError):
    """A retry of a call that must not be sent twice; ``error`` is the first failure.

    A rejection, so retry's default predicate stops at once; meshlite's HTTP
    transport unwraps it and returns (or raises) the original outcome.
    """

    def __init__(self, message: str, *, error: BaseException | None,
                 service: str | None) -> None:
        super().__init__(message, service=service, policy="routing")
        self.error = error


def prepare_retry(ctx: CallContext) -> None:
    """Before a later attempt (a retry, or a hedge, whose context is a copy made after
    the first pick): refuse if the call must not be resent; remember the backend of
    the previous attempt so this one avoids it."""
    extras = ctx.extras
    if extras is None:
        extras = ctx.extras = {}
    if extras.get("no_resend"):
        error = extras.get("last_error")
        raise ResendRefused(
            f"service {ctx.service!r}: not retrying {ctx.operation!r}: it is not "
            "idempotent and was already sent once; add an Idempotency-Key header or "
            "set Service(retry_non_idempotent=True) if resending is safe",
            error=error, service=ctx.service,
        ) from error
    previous = ctx.backend
    if previous is not None:
        tried = extras.get("tried")
        if tried is None:
            extras["tried"] = [previous]
        else:
            tried.append(previous)


def _deadline_passed(ctx: CallContext) -> TimeoutExceeded:
    return TimeoutExceeded(
        f"service {ctx.service!r}: the deadline of {ctx.operation!r} passed before "
        f"attempt {max(ctx.attempt, 1)} could start; raise the timeout or make earlier "
        "attempts faster",
        service=ctx.service, policy="routing",
    )


def _observe(service: Service, endpoint: Endpoint, start: float) -> None:
    # Read per attempt, so a mesh can turn metrics on after the handlers were built.
    observe = service._observe_attempt
    if observe is not None:
        observe(endpoint, start)


def async_route(service: Service) -> AsyncHandler:
    """The async routing handler of ``service``."""
    choose, failed, interrupted = service._choose, service._failed, service._interrupted
    detector = service.outlier_detection
    on_success = detector.succeeded if detector is not None else None
    isawaitable = inspect.isawaitable
    svc = service

    async def route(ctx: CallContext) -> Any:
        if ctx.backend is not None:  # a retry, or a hedge forked after the first pick
            prepare_retry(ctx)
        if ctx.deadline is not None and ctx.remaining() == 0.0:
            raise _deadline_passed(ctx)
        endpoint = choose(ctx)
        backend = ctx.backend = endpoint.backend
        start = endpoint.begin()
        try:
            with attempt_span(ctx, backend):
                result = ctx.fn(backend, *ctx.args, **ctx.kwargs)
                if type(result) is CoroutineType or isawaitable(result):
                    result = await result
        except Exception as error:
            failed(endpoint, start, error, ctx)
            _observe(svc, endpoint, start)
            raise
        except BaseException:
            interrupted(endpoint, start, ctx)
            if ctx.deadline is not None and ctx.remaining() == 0.0:
                _observe(svc, endpoint, start)  # cut by the deadline: the backend was slow
            raise
        endpoint.succeeded(start)
        observe = svc._observe_attempt  # inline: the success path is the hot one
        if observe is not None:
            observe(endpoint, start)
        if on_success is not None:
            on_success(endpoint)
        return result

    return route


def sync_route(service: Service) -> Handler:
    """The sync routing handler of ``service``."""
    choose, failed, interrupted = service._choose, service._failed, service._interrupted
    detector = service.outlier_detection
    on_success = detector.succeeded if detector is not None else None
    svc = service

    def route(ctx: CallContext) -> Any:
        if ctx.backend is not None:  # a retry, or a hedge forked after the first pick
            prepare_retry(ctx)
        if ctx.deadline is not None and ctx.remaining() == 0.0:
            raise _deadline_passed(ctx)
        endpoint = choose(ctx)
        backend = ctx.backend = endpoint.backend
        start = endpoint.begin()
        try:
            with attempt_span(ctx, backend):
                result = ctx.fn(backend, *ctx.args, **ctx.kwargs)
        except Exception as error:
            failed(endpoint, start, error, ctx)
            _observe(svc, endpoint, start)
            raise
        except BaseException:
            interrupted(endpoint, start, ctx)
            if ctx.deadline is not None and ctx.remaining() == 0.0:
                _observe(svc, endpoint, start)  # cut by the deadline: the backend was slow
            raise
        endpoint.succeeded(start)
        observe = svc._observe_attempt  # inline: the success path is the hot one
        if observe is not None:
            observe(endpoint, start)
        if on_success is not None:
            on_success(endpoint)
        return result

    return route
