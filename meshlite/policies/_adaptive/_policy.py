"""The :class:`AdaptiveConcurrency` policy: admission through its limiter, and the
events and rejection of each call."""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Callable
from typing import Any

from ..._clock import Clock
from ..._context import CallContext
from ..._errors import BulkheadFullError
from ..._events import CallRejected
from ..._policy import AsyncHandler, Handler, Policy
from ..._validate import clock_option, optional_random
from ._limiter import Limiter
from ._options import (
    DEFAULT_ALGORITHM,
    DEFAULT_INITIAL_LIMIT,
    DEFAULT_MAX_LIMIT,
    DEFAULT_MIN_LIMIT,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_PROBE_SAMPLES,
    DEFAULT_TOLERANCE,
    DEFAULT_WINDOW,
    AdaptiveConcurrencyOptions,
    Algorithm,
    ConcurrencyLimitChanged,
)

__all__ = ["AdaptiveConcurrency"]


class AdaptiveConcurrency(Policy):
    """Limit calls in flight to a limit learned from latency; reject the excess.

    Each successful call (and each timeout) is a latency sample. Every ``window``
    seconds the average is compared with the no-load latency (measured at start
    and every ``probe_interval`` seconds by pinning the limit low for
    ``probe_samples`` calls) and the limit moves by the ``algorithm``'s rule.

    Args:
        initial_limit: The limit before anything is learned (>= min_limit).
        min_limit: The lowest limit (>= 1).
        max_limit: The highest limit (>= initial_limit).
        algorithm: ``"gradient"`` (multiplicative, default) or ``"vegas"``
            (additive, queue-size based).
        tolerance: Gradient only: latency up to ``tolerance`` x no-load counts as
            no queueing (>= 1).
        smoothing: Share of each computed change applied, in (0, 1] (default 0.2
            for gradient, 1.0 for vegas).
        queue_size: Gradient headroom added each update, a number or
            ``fn(limit)`` (default ``sqrt(limit)``); also the probe's pinned limit.
        window: Minimum seconds per update window (> 0); a window also lasts at
            least twice the no-load latency and ``min_samples`` samples.
        min_samples: Samples needed to close a window (>= 1).
        probe_interval: Seconds between no-load measurements, or ``None`` to
            measure only by the fastest window seen.
        probe_samples: Samples per probe (>= 1).
        clock: Measures latency (default: the system clock).
        random: Jitters probe times (default: the ``random`` module's).

    Raises:
        ConfigError: a bad option.
        BulkheadFullError: (per call) the limit is reached; ``policy`` is
            ``"adaptive_concurrency"``.
    """

    kind = "adaptive_concurrency"

    def __init__(
        self,
        initial_limit: int = DEFAULT_INITIAL_LIMIT,
        min_limit: int = DEFAULT_MIN_LIMIT,
        max_limit: int = DEFAULT_MAX_LIMIT,
        algorithm: Algorithm = DEFAULT_ALGORITHM,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        smoothing: float | None = None,
        queue_size: float | Callable[[float], float] | None = None,
        window: float = DEFAULT_WINDOW,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        probe_interval: float | None = DEFAULT_PROBE_INTERVAL,
        probe_samples: int = DEFAULT_PROBE_SAMPLES,
        clock: Clock | None = None,
        random: _random.Random | None = None,
    ) -> None:
        super().__init__()
        self.options = AdaptiveConcurrencyOptions(
            initial_limit=initial_limit, min_limit=min_limit, max_limit=max_limit,
            algorithm=algorithm, tolerance=tolerance, smoothing=smoothing,
            queue_size=queue_size, window=window, min_samples=min_samples,
            probe_interval=probe_interval, probe_samples=probe_samples)
        self.clock: Clock = clock_option("AdaptiveConcurrency", clock)
        random = optional_random("AdaptiveConcurrency", random)
        self._state = Limiter(self.options, (random or _random).random)

    @property
    def limit(self) -> int:
        """The current concurrency limit."""
        return self._state.limit

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet finished."""
        return self._state.in_flight

    @property
    def no_load_rtt(self) -> float | None:
        """The no-load latency in seconds, once measured."""
        return self._state.no_load

    def _rejected(self, ctx: CallContext) -> BulkheadFullError:
        limit = self._state.limit
        if self.hooks.active:
            self._emit(CallRejected(policy=self.kind, service=ctx.service,
                                    operation=ctx.operation, reason="concurrency_limit"))
        return BulkheadFullError(
            f"AdaptiveConcurrency: the limit of {limit} calls in flight, learned from "
            f"latency, is reached; the service is at capacity: back off and retry, or "
            f"shed load (raise min_limit if the limit is lower than it should be)",
            service=ctx.service, policy=self.kind)

    def _changed(self, ctx: CallContext, change: tuple[int, int, str]) -> None:
        if self.hooks.active:
            old, new, reason = change
            self._emit(ConcurrencyLimitChanged(policy=self.kind, service=ctx.service,
                                               operation=ctx.operation, old=old, new=new,
                                               reason=reason))

    def wrap(self, call_next: Handler) -> Handler:
        acquire, release, now = self._state.acquire, self._state.release, self.clock.monotonic
        rejected, changed = self._rejected, self._changed

        def handle(ctx: CallContext) -> Any:
            seen = acquire()
            if not seen:
                raise rejected(ctx)
            start, sample = now(), False
            try:
                result = call_next(ctx)
                sample = True
                return result
            except TimeoutError:
                sample = True  # a timeout is a lower bound of the latency it would have had
                raise
            finally:
                change = release(start, now(), seen, sample)
                if change is not None:
                    changed(ctx, change)

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        acquire, release, now = self._state.acquire, self._state.release, self.clock.monotonic
        rejected, changed = self._rejected, self._changed

        async def handle(ctx: CallContext) -> Any:
            seen = acquire()
            if not seen:
                raise rejected(ctx)
            start, sample = now(), False
            try:
                result = await call_next(ctx)
                sample = True
                return result
            except TimeoutError:
                sample = True
                raise
            except asyncio.CancelledError:
                # Cut at a deadline of its own pipeline (a Timeout above): a timeout
                # too, whose TimeoutExceeded is raised above; any other cancellation
                # teaches nothing (CallContext.out_of_time, as breakers decide).
                sample = ctx.deadline is not None and ctx.out_of_time() == "own"
                raise
            finally:
                change = release(start, now(), seen, sample)
                if change is not None:
                    changed(ctx, change)

        return handle

    def __repr__(self) -> str:
        o = self.options
        return (f"AdaptiveConcurrency(algorithm={o.algorithm!r}, limit={self.limit}, "
                f"min_limit={o.min_limit}, max_limit={o.max_limit})")
