"""RateLimit: at most ``rate`` calls per ``per`` seconds (GCRA), waiting or rejecting."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Literal

from ..._clock import Clock
from ..._context import CallContext
from ..._errors import ConfigError, RateLimitedError
from ..._events import CallRejected
from ..._policy import AsyncHandler, Handler, Policy
from ..._validate import clock_option, positive
from ...state._base import SharedGcra, Store
from ...state._gcra_local import GcraStore, LocalGcra, LocalGcraCell
from ._handlers import async_handler, sync_handler
from ._options import (
    DEFAULT_MAX_KEYS,
    DEFAULT_MODE,
    DEFAULT_PER,
    RateLimitOptions,
    RateLimitWaited,
)
from ._shared import shared_async_handler, shared_sync_handler

__all__ = ["RateLimit"]

_INF = float("inf")


def _level(limiter: Any) -> float:
    """The calls an ``aiolimiter.AsyncLimiter``'s bucket holds now (0 when unknown).

    aiolimiter keeps its level and the loop time it last leaked at in private
    attributes, and leaks ``max_rate / time_period`` per second; its loop's clock is
    read for the leak since (a closed loop's ``time()`` still answers)."""
    level = getattr(limiter, "_level", None)
    last = getattr(limiter, "_last_check", None)
    loop = getattr(limiter, "_event_loop", None)  # set on first use
    if not isinstance(level, int | float) or not isinstance(last, int | float) or not level:
        return 0.0
    try:
        now = float(loop.time()) if loop is not None else last
        leaked = max(0.0, now - last) * float(limiter.max_rate) / float(limiter.time_period)
    except Exception:  # an attribute of another shape: start idle, as before
        return 0.0
    return min(max(0.0, float(level) - leaked), float(limiter.max_rate))


class RateLimit(Policy):
    """Admit at most ``rate`` calls per ``per`` seconds, plus a burst, per key.

    Over any interval of ``t`` seconds at most ``burst + rate * t / per`` calls are
    admitted (GCRA: one number of state per key, exact under threads and tasks).
    Callers over the limit wait for their own slot, first come first served
    (``mode="wait"``), or are rejected at once (``mode="reject"``).

    Args:
        rate: Calls allowed per ``per`` seconds (> 0).
        per: The period in seconds (> 0).
        burst: Calls that may run back to back after a quiet spell (integer >= 1);
            by default ``max(1, int(rate))``, one period's worth, as aiolimiter.
        mode: ``"wait"`` to sleep until the call's slot, ``"reject"`` to raise.
        max_wait: In wait mode, the longest a call may wait (``None``: unlimited).
            A call whose slot lies further away, or past the call's deadline, is
            rejected at once without sleeping.
        key: ``key(*args, **kwargs)`` of each call gives the quota it counts against
            (per-tenant limits); ``None`` for one quota shared by all calls.
        max_keys: Keys remembered (least recently used forgotten first); a forgotten
            key starts again with a full burst.
        store: ``None`` for in-process state, or a shared store such as
            :class:`meshlite.state.RedisStore`: then every process using the same
            store and ``name`` shares one quota (one atomic decision per call in
            the store; the in-process state is the ``on_error="local"`` fallback).
        name: The quota's name in the store; by default the call's service, else
            its operation. Only used with ``store``.
        clock: Time source (default: the system clock). With a store, waits are
            measured on it but slots are decided on the store's clock.

    Raises:
        ConfigError: an option is out of range.
        RateLimitedError: (when calling) the call was over the limit and could not wait.
    """

    kind = "rate_limit"

    def __init__(
        self,
        rate: float,
        per: float = DEFAULT_PER,
        burst: int | None = None,
        *,
        mode: Literal["wait", "reject"] = DEFAULT_MODE,
        max_wait: float | None = None,
        key: Callable[..., Hashable] | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        store: object = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.options = RateLimitOptions(rate=rate, per=per, burst=burst, mode=mode,
                                        max_wait=max_wait, key=key, max_keys=max_keys,
                                        store=store, name=name)
        self.clock: Clock = clock_option("RateLimit", clock)
        self.burst = self.options.effective_burst
        interval = float(per) / float(rate)
        tau = (self.burst - 1) * interval
        self._state: GcraStore = (LocalGcraCell(interval, tau) if key is None
                                  else LocalGcra(interval, tau, max_keys))
        # With a store: its shared states by quota name, made on first use.
        self._store: Store | None = store  # type: ignore[assignment]
        self._shared: dict[str, SharedGcra] = {}
        self._interval, self._tau = interval, tau

    @classmethod
    def from_aiolimiter(cls, limiter: Any, **options: Any) -> RateLimit:
        """An equivalent limiter for an ``aiolimiter.AsyncLimiter``.

        aiolimiter admits while its bucket holds room for one more, so a full bucket
        of ``max_rate`` calls may run at once: the result has ``rate=max_rate``,
        ``per=time_period`` and ``burst=max(1, int(max_rate))``. The capacity the
        limiter has spent and not yet regained is carried over (without ``key`` or
        ``store``), so adopting a limiter that has just admitted a burst admits no
        second one. aiolimiter itself is never imported: the limiter is read through
        its attributes. The two limiters share nothing afterwards.

        Args:
            limiter: The ``AsyncLimiter`` (read through ``max_rate`` and ``time_period``).
            **options: Other :class:`RateLimit` arguments (``mode``, ``key``, ``clock``...;
                ``burst`` overrides the bucket size).

        Raises:
            ConfigError: ``limiter`` lacks ``max_rate`` or ``time_period``.
        """
        rate = getattr(limiter, "max_rate", None)
        per = getattr(limiter, "time_period", None)
        if rate is None or per is None:
            raise ConfigError(
                "RateLimit.from_aiolimiter: limiter must be an aiolimiter.AsyncLimiter "
                f"(with max_rate and time_period), got {limiter!r}", policy=cls.kind)
        positive("RateLimit.from_aiolimiter", "limiter.max_rate", rate)
        options.setdefault("burst", max(1, int(rate)))
        adopted = cls(rate, per, **options)
        if adopted.options.key is None and adopted._store is None:
            # The calls the bucket still holds take their slots here, as admitted
            # calls would have: rounded up, so the adopted limiter is never looser.
            now = adopted.clock.monotonic()
            for _ in range(math.ceil(_level(limiter) - 1e-9)):
                adopted._state.reserve(None, now, _INF)
        return adopted

    @property
    def tracked_keys(self) -> int:
        """How many keys have state in memory (always 0 without ``key=``)."""
        return len(self._state)

    # -- the slow paths, shared by every handler -------------------------------

    def _rejection(self, ctx: CallContext, key: Hashable, wait: float,
                   limit: float) -> RateLimitedError:
        o = self.options
        where = f" for {ctx.service!r}" if ctx.service is not None else ""
        if key is not None:
            where += f" (key {key!r})"
        head = f"rate limit of {o.rate:g} per {float(o.per)!r} s{where} reached"
        if o.mode == "reject":
            tail = f"retry in {wait:.3f} s"
        elif o.max_wait is not None and limit >= o.max_wait:
            tail = (f"the next slot is {wait:.3f} s away, more than max_wait={o.max_wait!r} s; "
                    f"retry in {wait:.3f} s or raise max_wait")
        else:
            tail = (f"the next slot is {wait:.3f} s away, past the call's deadline "
                    f"({limit:.3f} s left); retry in {wait:.3f} s or allow more time")
        if self.hooks.active:
            self._emit(CallRejected(policy=self.kind, service=ctx.service,
                                    operation=ctx.operation, reason="rate_limited",
                                    retry_after=wait))
        return RateLimitedError(f"{head}; {tail}", service=ctx.service, policy=self.kind,
                                retry_after=wait)

    def _waited(self, ctx: CallContext, wait: float) -> None:
        if self.hooks.active:
            self._emit(RateLimitWaited(policy=self.kind, service=ctx.service,
                                       operation=ctx.operation, waited=wait))

    @property
    def _max_wait(self) -> float:
        return _INF if self.options.max_wait is None else float(self.options.max_wait)

    @staticmethod
    def _deadline_limit(ctx: CallContext, max_wait: float) -> float:
        # Never reserve a slot the call could only reach after its deadline.
        left = ctx.remaining()
        return max_wait if left is None or left > max_wait else left

    def _wait_sync(self, ctx: CallContext, key: Hashable, now: float, wait: float,
                   limit: float) -> None:
        if wait > limit:
            raise self._rejection(ctx, key, wait, limit)
        try:
            self.clock.sleep(wait)
        except BaseException:
            # Interrupted while waiting: the slot goes back to the next caller.
            self._state.release(key, now + wait)
            raise
        self._waited(ctx, wait)

    async def _wait_then_call(self, ctx: CallContext, key: Hashable, now: float, wait: float,
                              limit: float, call_next: AsyncHandler) -> Any:
        if wait > limit:
            raise self._rejection(ctx, key, wait, limit)
        try:
            await self.clock.asleep(wait)
        except BaseException:
            # Cancelled while waiting: give the slot back (only possible if nobody
            # reserved after us; otherwise it is lost, which admits fewer, never more).
            self._state.release(key, now + wait)
            raise
        self._waited(ctx, wait)
        return await call_next(ctx)

    # -- the policy contract ---------------------------------------------------

    def wrap(self, call_next: Handler) -> Handler:
        if self._store is not None:
            return shared_sync_handler(self, call_next, sync_handler(self, call_next))
        return sync_handler(self, call_next)

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        if self._store is not None:
            return shared_async_handler(self, call_next, async_handler(self, call_next))
        return async_handler(self, call_next)

    def __repr__(self) -> str:
        o = self.options
        return (f"RateLimit(rate={o.rate!r}, per={o.per!r}, burst={self.burst!r}, "
                f"mode={o.mode!r})")
