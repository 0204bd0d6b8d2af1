"""Calls recorded in a pipeline's own entry.

A pipeline whose outermost policy is a :class:`Recorder` (``ml.Metrics``) records
each call in its entry (``call``, ``acall`` and the functions it decorates) instead
of through the recorder's handler: the handler is a frame of its own on every sync
call and a coroutine of its own on every async one, about a third of what
recording costs. The entries here do what ``Pipeline``'s plain entries do (make
the call's context, make it current, run the chain) with the recording inline.

The recording is the mesh's: a call takes a token from its series' gate when it
starts and appends its latency when it ends (``observability._metrics.Timings``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._context import CallContext, _current
from ._context import operation_of as _operation_of
from ._policy import AsyncHandler, Handler

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["Recorder", "Series", "async_entry", "async_wrapper", "sync_entry",
           "sync_wrapper"]


class Series(Protocol):
    """The series of one (service, operation): see ``Timings``."""

    gate: list[None]
    pending: list[float]

    def reopen(self) -> bool:
        """The gate was found empty: count what is pending, refill, admit the call."""
        ...

    def error(self, seconds: float, error: BaseException) -> None:
        """Record a call that failed after ``seconds``."""
        ...

    def abandoned(self) -> None:
        """A call that took a token ended before it was timed."""
        ...


@runtime_checkable
class Recorder(Protocol):
    """A policy a pipeline may run in its entry when it is the outermost one."""

    def recording(self) -> tuple[dict[str | None, dict[str, Any]],
                                 Callable[[str | None, str], Series], Callable[[], float]]:
        """Its series by service then operation, the function that makes a missing
        one, and its clock's ``monotonic``."""
        ...


# The four entries below differ in how they get the call's operation (per call, or
# the decorated function's) and in sync/async; they are written out, not shared,
# because a shared helper would be the frame they exist to save.


def sync_entry(recorder: Recorder, rest: Pipeline, service: str | None
               ) -> Callable[..., Any]:
    """``Pipeline.call`` recording each call around the sync chain of ``rest`` (the
    policies below the recorder, compiled on first use as ``Pipeline.call`` does)."""
    table, make, monotonic = recorder.recording()
    get_parent = _current.get

    def call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        handler = rest._sync or rest.sync_handler()
        ctx = CallContext(fn, args, kwargs, _operation_of(fn), service, get_parent())
        try:
            series = table[ctx.service][ctx.operation]
        except KeyError:
            series = make(ctx.service, ctx.operation)
        try:
            series.gate.pop()
        except IndexError:
            series.reopen()
        token = _current.set(ctx)
        try:
            start = monotonic()
        except BaseException:  # a clock that raises: the call never started
            series.abandoned()
            _current.reset(token)
            raise
        try:
            result = handler(ctx)
        except BaseException as error:  # counted, then re-raised untouched
            series.error(monotonic() - start, error)
            raise
        finally:
            _current.reset(token)
        series.pending.append(monotonic() - start)
        return result

    return call


def async_entry(recorder: Recorder, handler: AsyncHandler, service: str | None
                ) -> Callable[..., Awaitable[Any]]:
    """``Pipeline.acall`` recording each call around the async chain ``handler``."""
    table, make, monotonic = recorder.recording()
    get_parent = _current.get

    async def acall(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        ctx = CallContext(fn, args, kwargs, _operation_of(fn), service, get_parent())
        try:
            series = table[ctx.service][ctx.operation]
        except KeyError:
            series = make(ctx.service, ctx.operation)
        try:
            series.gate.pop()
        except IndexError:
            series.reopen()
        token = _current.set(ctx)
        try:
            start = monotonic()
        except BaseException:  # a clock that raises: the call never started
            series.abandoned()
            _current.reset(token)
            raise
        try:
            result = await handler(ctx)
        except BaseException as error:  # counted (cancellation too), then re-raised
            series.error(monotonic() - start, error)
            raise
        finally:
            _current.reset(token)
        series.pending.append(monotonic() - start)
        return result

    return acall


def sync_wrapper(recorder: Recorder, handler: Handler, service: str | None,
                 fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` decorated: each call recorded around the sync chain ``handler``."""
    table, make, monotonic = recorder.recording()
    get_parent = _current.get
    operation = _operation_of(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = CallContext(fn, args, kwargs, operation, service, get_parent())
        try:
            series = table[ctx.service][operation]
        except KeyError:
            series = make(ctx.service, operation)
        try:
            series.gate.pop()
        except IndexError:
            series.reopen()
        token = _current.set(ctx)
        try:
            start = monotonic()
        except BaseException:  # a clock that raises: the call never started
            series.abandoned()
            _current.reset(token)
            raise
        try:
            result = handler(ctx)
        except BaseException as error:  # counted, then re-raised untouched
            series.error(monotonic() - start, error)
            raise
        finally:
            _current.reset(token)
        series.pending.append(monotonic() - start)
        return result

    return wrapper


def async_wrapper(recorder: Recorder, handler: AsyncHandler, service: str | None,
                  fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """The coroutine function ``fn`` decorated: each call recorded around the async
    chain ``handler``."""
    table, make, monotonic = recorder.recording()
    get_parent = _current.get
    operation = _operation_of(fn)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = CallContext(fn, args, kwargs, operation, service, get_parent())
        try:
            series = table[ctx.service][operation]
        except KeyError:
            series = make(ctx.service, operation)
        try:
            series.gate.pop()
        except IndexError:
            series.reopen()
        token = _current.set(ctx)
        try:
            start = monotonic()
        except BaseException:  # a clock that raises: the call never started
            series.abandoned()
            _current.reset(token)
            raise
        try:
            result = await handler(ctx)
        except BaseException as error:  # counted (cancellation too), then re-raised
            series.error(monotonic() - start, error)
            raise
        finally:
            _current.reset(token)
        series.pending.append(monotonic() - start)
        return result

    return wrapper
