"""The routing handler: the innermost handler of every service's pipeline.

Policies wrap it and know nothing of routing; it knows nothing of HTTP. For each
attempt it picks a backend (avoiding those this call already tried), calls
``ctx.fn(backend, *ctx.args, **ctx.kwargs)``, measures the latency, and feeds the
endpoint's statistics and outlier detection. Failures are reported by raising, so
retry and circuit breakers above see them.

An attempt is a later one when ``ctx.backend`` is already set: by an earlier
attempt on this context (retry), or on the context it was copied from (hedge).
Fields of the context it uses: ``tried`` (backends of earlier attempts),
``last_error`` (the last attempt's error) and ``no_resend`` (set by a caller, such
as the HTTP layer after it sent a non-idempotent request: a later attempt refuses
instead of sending again).

Attempt latencies are recorded by the endpoint itself (``Endpoint.succeeded`` and
``failed``, which time the attempt for the EWMA anyway), in the histogram a mesh
recording metrics asked it to keep: routing adds no clock read and no call for them.

While a backend has not answered yet, ``Service._choose`` may raise
:class:`~meshlite.routing._first_wave.FirstAnswerPending` (every candidate is such a
backend with its first attempt out): the async handler then waits, bounded, for a
first answer (``Service._hold``); the sync one picks at once. The ``try`` costs
nothing when nothing is raised.

Each attempt runs under :func:`~meshlite.telemetry._spans.attempt_span`'s span
when the call's span records; the test is inlined here, so an untraced attempt
costs an attribute read and no context manager.
"""

from __future__ import annotations

import inspect
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import INVALID_SPAN

from .._context import CallContext
from .._errors import ResendRefused, TimeoutExceeded
from .._policy import AsyncHandler, Handler
from ..telemetry._spans import AttemptSpan
from ._first_wave import FirstAnswerPending

if TYPE_CHECKING:
    from ._service import Service

__all__ = ["ResendRefused", "async_route", "prepare_retry", "sync_route"]


def prepare_retry(ctx: CallContext) -> None:
    """Before a later attempt (a retry, or a hedge, whose context is a copy made after
    the first pick): refuse if the call must not be resent; remember the backend of
    the first attempt so this one avoids it (later picks are remembered as they are
    made)."""
    if ctx.no_resend:
        error = ctx.last_error
        raise ResendRefused(
            f"service {ctx.service!r}: not retrying {ctx.operation!r}: it is not "
            "idempotent and was already sent once; add an Idempotency-Key header or "
            "set Service(retry_non_idempotent=True) if resending is safe",
            error=error, service=ctx.service,
        ) from error
    if ctx.tried is None:  # the first pick was not recorded (routing.Service._choose)
        ctx.tried = [ctx.backend]


def _deadline_passed(ctx: CallContext) -> TimeoutExceeded:
    return TimeoutExceeded(
        f"service {ctx.service!r}: the deadline of {ctx.operation!r} passed before "
        f"attempt {max(ctx.attempt, 1)} could start; raise the timeout or make earlier "
        "attempts faster",
        service=ctx.service, policy="routing",
    )


def async_route(service: Service) -> AsyncHandler:
    """The async routing handler of ``service``."""
    choose, failed, interrupted = service._choose, service._failed, service._interrupted
    hold = service._hold
    isawaitable = inspect.isawaitable

    async def route(ctx: CallContext) -> Any:
        if ctx.backend is not None:  # a retry, or a hedge forked after the first pick
            prepare_retry(ctx)
        if ctx.deadline is not None and ctx.remaining() == 0.0:
            raise _deadline_passed(ctx)
        try:
            endpoint = choose(ctx)
        except FirstAnswerPending:  # wait for a first answer (a cold start only)
            endpoint = await hold(ctx, choose)
            if ctx.deadline is not None and ctx.remaining() == 0.0:
                raise _deadline_passed(ctx) from None
        backend = ctx.backend = endpoint.backend
        span = ctx.span
        start = endpoint.begin()
        try:
            if span is None or span is INVALID_SPAN or not span.is_recording():
                kwargs = ctx.kwargs  # none, usually: then no keyword dict is unpacked
                result = (ctx.fn(backend, *ctx.args, **kwargs) if kwargs
                          else ctx.fn(backend, *ctx.args))
                if type(result) is CoroutineType or isawaitable(result):
                    result = await result
            else:
                with AttemptSpan(ctx, backend):
                    result = ctx.fn(backend, *ctx.args, **ctx.kwargs)
                    if type(result) is CoroutineType or isawaitable(result):
                        result = await result
        except Exception as error:
            failed(endpoint, start, error, ctx)
            raise
        except BaseException:
            interrupted(endpoint, start, ctx)
            raise
        endpoint.succeeded(start)  # (and outlier detection's streak and window)
        return result

    return route


def sync_route(service: Service) -> Handler:
    """The sync routing handler of ``service``."""
    choose, failed, interrupted = service._choose, service._failed, service._interrupted
    blind = service._blind

    def route(ctx: CallContext) -> Any:
        if ctx.backend is not None:  # a retry, or a hedge forked after the first pick
            prepare_retry(ctx)
        if ctx.deadline is not None and ctx.remaining() == 0.0:
            raise _deadline_passed(ctx)
        try:
            endpoint = choose(ctx)
        except FirstAnswerPending as pending:  # a sync attempt does not wait for one
            endpoint = blind(pending, ctx)
        backend = ctx.backend = endpoint.backend
        span = ctx.span
        start = endpoint.begin()
        try:
            if span is None or span is INVALID_SPAN or not span.is_recording():
                kwargs = ctx.kwargs  # none, usually: then no keyword dict is unpacked
                result = (ctx.fn(backend, *ctx.args, **kwargs) if kwargs
                          else ctx.fn(backend, *ctx.args))
            else:
                with AttemptSpan(ctx, backend):
                    result = ctx.fn(backend, *ctx.args, **ctx.kwargs)
        except Exception as error:
            failed(endpoint, start, error, ctx)
            raise
        except BaseException:
            interrupted(endpoint, start, ctx)
            raise
        endpoint.succeeded(start)  # (and outlier detection's streak and window)
        return result

    return route
