"""The handlers of a CircuitBreaker whose state lives in a shared store.

Chosen at wrap time only when ``store=`` is set, so in-memory breakers keep their
lock-free gate. Every call takes a permit from the store (one round trip: the
state, the open period's end and the half-open trial count are read and changed
atomically there) and records its outcome there (a second round trip). When the
store cannot answer, the call goes to ``local`` (the in-memory handler of the same
breaker), is admitted, denied or the error is raised, as the store's ``on_error``
says; an outcome that cannot be recorded is dropped (and announced), never
raised over the call's own result.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from ..._context import CallContext
from ..._errors import CircuitOpenError
from ..._events import CallRejected
from ..._policy import AsyncHandler, Handler
from ...state._base import ALLOW, LOCAL, StoreUnavailableError, agive_back, fall_back, give_back
from ...state._circuit_records import UNRECORDED, Admission
from ._handlers import cut_by_deadline, says_nothing

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._policy import CircuitBreaker

__all__ = ["shared_async_handler", "shared_sync_handler"]


def _denied(breaker: CircuitBreaker, ctx: CallContext) -> CircuitOpenError:
    store = breaker._shared_store
    assert store is not None
    retry = store.retry_interval
    if breaker.hooks.active:
        breaker._emit(CallRejected(policy=breaker.kind, service=ctx.service,
                                   operation=ctx.operation, reason="store_unavailable",
                                   retry_after=retry))
    return CircuitOpenError(
        f"circuit '{breaker.name}': its store {store.label} is unavailable and "
        f"on_error='deny' rejects calls meanwhile; retry in {retry:g} s",
        service=ctx.service, policy=breaker.kind, retry_after=retry)


def _admitted(breaker: CircuitBreaker) -> Callable[[CallContext, Admission], int]:
    announce, rejection = breaker._announce, breaker._rejection

    def admitted(ctx: CallContext, admission: Admission) -> int:
        if admission.transition is not None:
            announce(ctx, admission.transition)
        if admission.permit is None:
            raise rejection(ctx, admission)
        return admission.permit

    return admitted


def _apart(breaker: CircuitBreaker) -> Callable[[CallContext], None]:
    """What a call the store could not decide does before the in-process state decides
    it: tells hooks that state, when they last heard another (the shared circuit was
    open, this process's is closed: calls go through again, which an operator reading
    the log must know)."""
    shared, core, announce = breaker._shared, breaker._core, breaker._announce
    apart = getattr(shared, "apart", None)  # (a store of before: none)

    def told(ctx: CallContext) -> None:
        if apart is not None:
            transition = apart(core.state())
            if transition is not None:
                announce(ctx, transition)

    return told


def shared_sync_handler(breaker: CircuitBreaker, call_next: Handler, local: Handler) -> Handler:
    """The sync handler of ``breaker`` on its store; ``local`` is its in-memory one."""
    shared, store = breaker._shared, breaker._shared_store
    assert shared is not None
    assert store is not None
    apart = _apart(breaker)
    admitted, announce, is_failure = _admitted(breaker), breaker._announce, breaker._is_failure
    monotonic = breaker._clock.monotonic
    slow = breaker.options.slow_call_seconds or math.inf

    def record(ctx: CallContext, permit: int, failed: bool, duration: float) -> None:
        try:
            transition = shared.record(permit, failed, duration >= slow)
        except StoreUnavailableError as error:
            fall_back(breaker, store, ctx, error, step="record")
            return
        if transition is not None:
            announce(ctx, transition)

    def judged(ctx: CallContext, permit: int, error: Exception) -> bool:
        try:
            return is_failure(error)
        except BaseException:  # failure_on raised: the call says nothing
            give_back(breaker, store, ctx, lambda: shared.release(permit))
            raise

    def handle(ctx: CallContext) -> Any:
        try:
            admission = shared.acquire()
        except StoreUnavailableError as error:
            action = fall_back(breaker, store, ctx, error)
            if action == LOCAL:
                apart(ctx)
                return local(ctx)
            if action == ALLOW:
                return call_next(ctx)
            raise _denied(breaker, ctx) from None
        permit = admitted(ctx, admission)
        if permit == UNRECORDED:
            return call_next(ctx)
        start = monotonic()
        try:
            result = call_next(ctx)
        except Exception as error:
            if says_nothing(ctx, error):
                give_back(breaker, store, ctx, lambda: shared.release(permit))
            else:
                record(ctx, permit, judged(ctx, permit, error), monotonic() - start)
            raise
        except BaseException:
            # Interrupted: neither success nor failure.
            give_back(breaker, store, ctx, lambda: shared.release(permit))
            raise
        record(ctx, permit, False, monotonic() - start)
        return result

    return handle


def shared_async_handler(breaker: CircuitBreaker, call_next: AsyncHandler,
                         local: AsyncHandler) -> AsyncHandler:
    """The async twin of :func:`shared_sync_handler`."""
    shared, store = breaker._shared, breaker._shared_store
    assert shared is not None
    assert store is not None
    apart = _apart(breaker)
    admitted, announce, is_failure = _admitted(breaker), breaker._announce, breaker._is_failure
    monotonic = breaker._clock.monotonic
    slow = breaker.options.slow_call_seconds or math.inf
    releases: set[asyncio.Task[None]] = set()

    async def record(ctx: CallContext, permit: int, failed: bool, duration: float) -> None:
        try:
            transition = await shared.arecord(permit, failed, duration >= slow)
        except StoreUnavailableError as error:
            fall_back(breaker, store, ctx, error, step="record")
            return
        if transition is not None:
            announce(ctx, transition)

    async def release(ctx: CallContext, permit: int) -> None:
        await agive_back(breaker, store, ctx, lambda: shared.arelease(permit))

    def settle_later(ctx: CallContext, permit: int, interruption: BaseException,
                     duration: float) -> None:
        # Cancelled: record a failure if the deadline cut the call, else give the
        # permit back; in the background, without holding up the cancellation.
        error = cut_by_deadline(ctx, interruption)
        try:  # (failure_on raising: the permit goes back, the cancellation goes on)
            failure = error is not None and is_failure(error)
        except Exception:
            error = None
        settle = (release(ctx, permit) if error is None
                  else record(ctx, permit, failure, duration))
        task = asyncio.get_running_loop().create_task(settle)
        releases.add(task)
        task.add_done_callback(releases.discard)

    async def handle(ctx: CallContext) -> Any:
        try:
            admission = await shared.aacquire()
        except StoreUnavailableError as error:
            action = fall_back(breaker, store, ctx, error)
            if action == LOCAL:
                apart(ctx)
                return await local(ctx)
            if action == ALLOW:
                return await call_next(ctx)
            raise _denied(breaker, ctx) from None
        permit = admitted(ctx, admission)
        if permit == UNRECORDED:
            return await call_next(ctx)
        start = monotonic()
        try:
            result = await call_next(ctx)
        except Exception as error:
            if says_nothing(ctx, error):
                await release(ctx, permit)
                raise
            try:
                failure = is_failure(error)
            except BaseException:  # failure_on raised: the call says nothing
                await release(ctx, permit)
                raise
            await record(ctx, permit, failure, monotonic() - start)
            raise
        except BaseException as interruption:
            settle_later(ctx, permit, interruption, monotonic() - start)
            raise
        await record(ctx, permit, False, monotonic() - start)
        return result

    return handle
