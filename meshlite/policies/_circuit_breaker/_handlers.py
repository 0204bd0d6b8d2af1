"""The breaker's per-call handlers, sync and async side by side.

The success path of a closed circuit reads one attribute (``core.gate``), calls
the next handler and records the outcome (without locking once the window is
settled, see :mod:`meshlite.state._circuit_local`); admission when
not closed, rejections and errors take the slow paths built by the policy. Calls
are only timed when slow-call detection is on (``monotonic`` is not ``None``),
which saves two clock reads per call otherwise.

A call cancelled because a deadline of its own pipeline passed (an outer
``Timeout``) ran too long on the service: it is recorded as a failure with
``TimeoutExceeded``, so a service that hangs opens the circuit. A call cut by the
deadline it inherited from its caller (an inbound request's budget, which a client
chooses) and a call cancelled for any other reason record nothing: a client asking
for less time than the service needs must not open the circuit for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ..._context import CallContext
from ..._errors import ConfigError, RejectedError, TimeoutExceeded
from ..._policy import AsyncHandler, Handler
from ...state._circuit_local import LocalCircuitState
from ...state._circuit_records import Transition

__all__ = ["async_handler", "cut_by_deadline", "says_nothing", "sync_handler"]

Admit = Callable[[CallContext], int]
Failed = Callable[[CallContext, int, Exception, float], None]
Announce = Callable[[CallContext, Transition], None]


def cut_by_deadline(ctx: CallContext, interruption: BaseException) -> TimeoutExceeded | None:
    """The failure to record for a call of ``ctx`` that ``interruption`` ended: a
    ``TimeoutExceeded`` when it is a cancellation at a deadline of the call's own
    pipeline (the service was too slow), else ``None`` (the call records nothing:
    see :meth:`CallContext.out_of_time`)."""
    if not isinstance(interruption, asyncio.CancelledError) or ctx.out_of_time() != "own":
        return None
    return TimeoutExceeded(f"call {ctx.operation!r} was cancelled at its deadline",
                           service=ctx.service, policy="circuit_breaker")


def says_nothing(ctx: CallContext, error: Exception) -> bool:
    """Whether a call of ``ctx`` that raised ``error`` says nothing about the service,
    so it records neither success nor failure: another policy refused it
    (``RejectedError``), a ``ConfigError`` ended it (a mistake in the configuration,
    which an open circuit would hide behind ``CircuitOpenError``), or it failed once
    its caller's deadline had passed (a sync wire's own timeout, clamped to the time
    the caller left it, raises ``httpx.ReadTimeout`` then, not a cancellation; see
    :meth:`CallContext.out_of_time`)."""
    return isinstance(error, RejectedError | ConfigError) or (
        ctx.deadline is not None and ctx.out_of_time() == "caller")


def sync_handler(call_next: Handler, core: LocalCircuitState, admit: Admit, failed: Failed,
                 announce: Announce, monotonic: Callable[[], float] | None) -> Handler:
    """The sync handler applying the breaker around ``call_next``."""
    success, release = core.on_success, core.release

    if monotonic is None:
        def handle(ctx: CallContext) -> Any:
            permit = core.gate
            if permit is None:
                permit = admit(ctx)
            try:
                result = call_next(ctx)
            except Exception as error:
                failed(ctx, permit, error, 0.0)
                raise
            except BaseException:
                release(permit)  # cancelled or interrupted: neither success nor failure
                raise
            if core.settled:
                return result
            transition = success(permit, 0.0)
            if transition is not None:
                announce(ctx, transition)
            return result

        return handle

    clock = monotonic

    def handle_timed(ctx: CallContext) -> Any:
        permit = core.gate
        if permit is None:
            permit = admit(ctx)
        start = clock()
        try:
            result = call_next(ctx)
        except Exception as error:
            failed(ctx, permit, error, clock() - start)
            raise
        except BaseException:
            release(permit)
            raise
        transition = success(permit, clock() - start)
        if transition is not None:
            announce(ctx, transition)
        return result

    return handle_timed


def async_handler(call_next: AsyncHandler, core: LocalCircuitState, admit: Admit,
                  failed: Failed, announce: Announce,
                  monotonic: Callable[[], float] | None) -> AsyncHandler:
    """The async twin of :func:`sync_handler`; a call its deadline cancelled is a
    failure (see the module's docstring)."""
    success, release = core.on_success, core.release

    def cancelled(ctx: CallContext, permit: int, interruption: BaseException,
                  duration: float) -> None:
        error = cut_by_deadline(ctx, interruption)
        if error is None:
            release(permit)  # cancelled: neither success nor failure
        else:  # (failure_on raising gives the permit back; the cancellation goes on)
            with contextlib.suppress(Exception):
                failed(ctx, permit, error, duration)

    if monotonic is None:
        async def handle(ctx: CallContext) -> Any:
            permit = core.gate
            if permit is None:
                permit = admit(ctx)
            try:
                result = await call_next(ctx)
            except Exception as error:
                failed(ctx, permit, error, 0.0)
                raise
            except BaseException as interruption:
                cancelled(ctx, permit, interruption, 0.0)
                raise
            if core.settled:
                return result
            transition = success(permit, 0.0)
            if transition is not None:
                announce(ctx, transition)
            return result

        return handle

    clock = monotonic

    async def handle_timed(ctx: CallContext) -> Any:
        permit = core.gate
        if permit is None:
            permit = admit(ctx)
        start = clock()
        try:
            result = await call_next(ctx)
        except Exception as error:
            failed(ctx, permit, error, clock() - start)
            raise
        except BaseException as interruption:
            cancelled(ctx, permit, interruption, clock() - start)
            raise
        transition = success(permit, clock() - start)
        if transition is not None:
            announce(ctx, transition)
        return result

    return handle_timed
