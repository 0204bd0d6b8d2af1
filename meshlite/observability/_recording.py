"""The one recording implementation: a handler that records each call it runs in a
:class:`~._metrics.Timings` (counted in flight while it runs, then its latency, or
its latency and error), used by the mesh's dispatch (per service) and by
``ml.Metrics`` (per service and operation).

A recorder is a handler of its own, a closure over the next handler, rather than a
method taking that handler: a policy's chain then pays no frame for finding the
series. The sync handler and its async twin are written out, not built on a shared
helper, as a helper would be a frame per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._context import CallContext
from .._histogram import FOLD_AT
from .._policy import AsyncHandler, Handler

if TYPE_CHECKING:
    from ._metrics import Timings

__all__ = ["SeriesTable", "arecorded", "recorded"]

SeriesTable = dict[str | None, dict[str, "Timings"]]
"""Series by service, then operation (``ml.Metrics``'s): two lookups of strings whose
hashes are cached cost less than building and hashing a (service, operation) key."""


def _no_table(service: str | None, operation: str) -> Timings:
    raise AssertionError("a recorder with a series of its own looks nothing up")


def recorded(call_next: Handler, series: Timings | None = None, table: SeriesTable | None = None,
             make: Callable[[str | None, str], Timings] = _no_table) -> Handler:
    """``call_next`` with each call recorded: counted in flight while it runs, then its
    latency, or its latency and error (re-raised untouched).

    Args:
        call_next: The handler recorded.
        series: Where every call is recorded; None: in the series of the call's
            (service, operation) in ``table``, made by ``make`` when missing.
        table: The series by service, then operation (with ``series=None``).
        make: Makes (and enters in ``table``) a missing series.
    """
    by_service: SeriesTable = {} if table is None else table

    def record(ctx: CallContext) -> Any:
        timings = series
        if timings is None:
            try:
                timings = by_service[ctx.service][ctx.operation]
            except KeyError:
                timings = make(ctx.service, ctx.operation)
        monotonic = timings.monotonic
        start = monotonic()  # before the call counts: a clock that raises leaves nothing
        calls = timings.calls
        calls.append(None)
        try:
            result = call_next(ctx)
        except BaseException as error:  # counted, then re-raised untouched
            calls.pop()
            timings.error(monotonic() - start, error)
            raise
        calls.pop()
        pending = timings.pending
        pending.append(monotonic() - start)
        if len(pending) >= FOLD_AT:
            timings.fold()
        return result

    return record


def arecorded(call_next: AsyncHandler, series: Timings | None = None,
              table: SeriesTable | None = None,
              make: Callable[[str | None, str], Timings] = _no_table) -> AsyncHandler:
    """Async twin of :func:`recorded` (cancellation is recorded as an error too)."""
    by_service: SeriesTable = {} if table is None else table

    async def record(ctx: CallContext) -> Any:
        timings = series
        if timings is None:
            try:
                timings = by_service[ctx.service][ctx.operation]
            except KeyError:
                timings = make(ctx.service, ctx.operation)
        monotonic = timings.monotonic
        start = monotonic()
        calls = timings.calls
        calls.append(None)
        try:
            result = await call_next(ctx)
        except BaseException as error:  # counted (cancellation too), then re-raised
            calls.pop()
            timings.error(monotonic() - start, error)
            raise
        calls.pop()
        pending = timings.pending
        pending.append(monotonic() - start)
        if len(pending) >= FOLD_AT:
            timings.fold()
        return result

    return record
