"""The handlers of a RateLimit whose state lives in a shared store.

Chosen at wrap time only when ``store=`` is set, so in-memory limiters keep their
gate untouched. Each call is one atomic reservation in the store
(:meth:`SharedGcra.reserve`); a call over the limit waits on the policy's clock for
the duration the store gave (a duration needs no shared clock), or is rejected.
When the store cannot answer, the call goes to ``local`` (the in-memory handler
of the same policy), is admitted, denied, or the error is raised, as the store's
``on_error`` says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable
from typing import TYPE_CHECKING, Any

from ..._context import CallContext
from ..._errors import RateLimitedError
from ..._events import CallRejected
from ..._policy import AsyncHandler, Handler
from ...state._base import (
    ALLOW,
    LOCAL,
    SharedGcra,
    StoreUnavailableError,
    agive_back,
    fall_back,
    give_back,
    text_key,
)
from ._options import MAX_QUOTA_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._policy import RateLimit

__all__ = ["shared_async_handler", "shared_sync_handler"]


def _state_finder(policy: RateLimit) -> tuple[SharedGcra | None,
                                              Callable[[CallContext], SharedGcra]]:
    """``(state, state_of)``: the one shared state of a named limit (else ``None``),
    and ``state_of(ctx)``, the shared state of the call's quota name."""
    store, states = policy._store, policy._shared
    assert store is not None
    interval, tau = policy._interval, policy._tau
    fixed = policy.options.name
    only = None if fixed is None else store.rate_limit(fixed, interval, tau)

    def state(ctx: CallContext) -> SharedGcra:
        name = ctx.service or ctx.operation
        found = states.get(name)
        if found is None:
            if len(states) >= MAX_QUOTA_NAMES:
                # Operations named per call must not pile up here: the store has
                # each quota's state, asked again for a name that comes back.
                states.clear()
            found = states.setdefault(name, store.rate_limit(name, interval, tau))
        return found

    return only, state


def _denied(policy: RateLimit, ctx: CallContext) -> RateLimitedError:
    store = policy._store
    assert store is not None
    where = f" for {ctx.service!r}" if ctx.service is not None else ""
    retry = store.retry_interval
    if policy.hooks.active:
        policy._emit(CallRejected(policy=policy.kind, service=ctx.service,
                                  operation=ctx.operation, reason="store_unavailable",
                                  retry_after=retry))
    return RateLimitedError(
        f"rate limit{where}: its store {store.label} is unavailable and on_error='deny' "
        f"rejects calls meanwhile; retry in {retry:g} s", service=ctx.service,
        policy=policy.kind, retry_after=retry)


def shared_sync_handler(policy: RateLimit, call_next: Handler, local: Handler) -> Handler:
    """The sync handler of ``policy`` on its store; ``local`` is its in-memory handler."""
    store = policy._store
    assert store is not None
    named, state_of = _state_finder(policy)
    key_fn, sleep, reject = policy.options.key, policy.clock.sleep, policy._rejection
    reject_mode = policy.options.mode == "reject"
    max_wait, deadline_limit = policy._max_wait, policy._deadline_limit

    def fallback(ctx: CallContext, error: StoreUnavailableError) -> Any:
        action = fall_back(policy, store, ctx, error)
        if action == LOCAL:
            return local(ctx)
        if action == ALLOW:
            return call_next(ctx)
        raise _denied(policy, ctx)

    def handle(ctx: CallContext) -> Any:
        raw: Hashable = None if key_fn is None else key_fn(*ctx.args, **ctx.kwargs)
        key = "" if raw is None else text_key(raw)
        if reject_mode:
            limit = 0.0
        else:
            limit = max_wait if ctx.deadline is None else deadline_limit(ctx, max_wait)
        state = named or state_of(ctx)
        try:
            wait, token = state.reserve(key, limit)
        except StoreUnavailableError as error:
            return fallback(ctx, error)
        if wait <= 0.0:
            return call_next(ctx)
        if wait > limit:
            raise reject(ctx, raw, wait, limit)
        try:
            sleep(wait)
        except BaseException:
            # Interrupted while waiting: the slot goes back (best effort).
            give_back(policy, store, ctx, lambda: state.release(key, token))
            raise
        policy._waited(ctx, wait)
        return call_next(ctx)

    return handle


def shared_async_handler(policy: RateLimit, call_next: AsyncHandler,
                         local: AsyncHandler) -> AsyncHandler:
    """The async twin of :func:`shared_sync_handler`."""
    store = policy._store
    assert store is not None
    named, state_of = _state_finder(policy)
    key_fn, asleep, reject = policy.options.key, policy.clock.asleep, policy._rejection
    reject_mode = policy.options.mode == "reject"
    max_wait, deadline_limit = policy._max_wait, policy._deadline_limit
    releases: set[asyncio.Task[None]] = set()

    def fallback(ctx: CallContext, error: StoreUnavailableError) -> Awaitable[Any]:
        action = fall_back(policy, store, ctx, error)
        if action == LOCAL:
            return local(ctx)
        if action == ALLOW:
            return call_next(ctx)
        raise _denied(policy, ctx)

    async def release(ctx: CallContext, state: SharedGcra, key: str, token: Any) -> None:
        await agive_back(policy, store, ctx, lambda: state.arelease(key, token))

    async def handle(ctx: CallContext) -> Any:
        raw: Hashable = None if key_fn is None else key_fn(*ctx.args, **ctx.kwargs)
        key = "" if raw is None else text_key(raw)
        if reject_mode:
            limit = 0.0
        else:
            limit = max_wait if ctx.deadline is None else deadline_limit(ctx, max_wait)
        state = named or state_of(ctx)
        try:
            wait, token = await state.areserve(key, limit)
        except StoreUnavailableError as error:
            return await fallback(ctx, error)
        if wait <= 0.0:
            return await call_next(ctx)
        if wait > limit:
            raise reject(ctx, raw, wait, limit)
        try:
            await asleep(wait)
        except BaseException:
            # Cancelled while waiting: give the slot back in a task of its own, so
            # the cancellation is not held up by a round trip.
            task = asyncio.get_running_loop().create_task(release(ctx, state, key, token))
            releases.add(task)
            task.add_done_callback(releases.discard)
            raise
        policy._waited(ctx, wait)
        return await call_next(ctx)

    return handle
