"""The per-call handlers of RateLimit, chosen once when the policy wraps.

A keyless limiter on in-memory state gets a *gate*: a handler that admits a call
due now with one locked GCRA update and calls on (see
:meth:`LocalGcraCell.gate`); only a call that must wait or be rejected goes on to
the slower path here. The async gate is a plain function returning the next
handler's awaitable (as the pipeline's ``_invoke`` does), so an admitted async call
costs no extra coroutine frame. Keyed limiters (and, later, shared stores) go
through :meth:`GcraStore.reserve`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

from ..._context import CallContext
from ..._policy import AsyncHandler, Handler
from ...state._gcra_local import LocalGcraCell

if TYPE_CHECKING:
    from ._policy import RateLimit

__all__ = ["async_handler", "sync_handler"]


def _no_key(*args: Any, **kwargs: Any) -> None:
    return None


def sync_handler(policy: RateLimit, call_next: Handler) -> Handler:
    """The sync handler of ``policy`` around ``call_next``."""
    state = policy._state
    reserve = state.reserve
    monotonic = policy.clock.monotonic
    reject = policy._rejection
    wait_for = policy._wait_sync
    max_wait = policy._max_wait
    deadline_limit = policy._deadline_limit
    wait_mode = policy.options.mode == "wait"

    def busy(ctx: CallContext, now: float, key: Hashable = None) -> Any:
        # Over the limit at the gate (or keyed): reserve for real, with this call's limit.
        if not wait_mode:
            wait = reserve(key, now, 0.0)
            if wait > 0.0:
                raise reject(ctx, key, wait, 0.0)
            return call_next(ctx)
        limit = max_wait if ctx.deadline is None else deadline_limit(ctx, max_wait)
        wait = reserve(key, now, limit)
        if wait > 0.0:
            wait_for(ctx, key, now, wait, limit)
        return call_next(ctx)

    key_fn = policy.options.key
    if key_fn is None and isinstance(state, LocalGcraCell):
        handler: Handler = state.gate(monotonic, call_next, busy)
        return handler
    key_of = _no_key if key_fn is None else key_fn

    def handle_keyed(ctx: CallContext) -> Any:
        return busy(ctx, monotonic(), key_of(*ctx.args, **ctx.kwargs))

    return handle_keyed


def async_handler(policy: RateLimit, call_next: AsyncHandler) -> AsyncHandler:
    """The async handler of ``policy`` around ``call_next``."""
    state = policy._state
    reserve = state.reserve
    monotonic = policy.clock.monotonic
    reject = policy._rejection
    wait_then_call = policy._wait_then_call
    max_wait = policy._max_wait
    deadline_limit = policy._deadline_limit
    wait_mode = policy.options.mode == "wait"

    async def rejected(ctx: CallContext, key: Hashable, wait: float) -> Any:
        raise reject(ctx, key, wait, 0.0)

    def busy(ctx: CallContext, now: float, key: Hashable = None) -> Awaitable[Any]:
        if not wait_mode:
            wait = reserve(key, now, 0.0)
            return call_next(ctx) if wait <= 0.0 else rejected(ctx, key, wait)
        limit = max_wait if ctx.deadline is None else deadline_limit(ctx, max_wait)
        wait = reserve(key, now, limit)
        if wait <= 0.0:
            return call_next(ctx)
        return wait_then_call(ctx, key, now, wait, limit, call_next)

    key_fn = policy.options.key
    if key_fn is None and isinstance(state, LocalGcraCell):
        handler: AsyncHandler = state.gate(monotonic, call_next, busy)
        return handler
    key_of: Callable[..., Hashable] = _no_key if key_fn is None else key_fn

    async def handle_keyed(ctx: CallContext) -> Any:
        # A coroutine from the start, so an error in the key function surfaces when
        # the call is awaited, as any error of the call would.
        return await busy(ctx, monotonic(), key_of(*ctx.args, **ctx.kwargs))

    return handle_keyed
