"""AdaptiveConcurrency: a concurrency limit that finds itself from observed latency.

The limiter compares the latency of recent calls with the service's no-load
latency: while they match, the service has spare capacity and the limit grows;
when latency rises, calls are queueing downstream and the limit shrinks. The
update rules are Netflix concurrency-limits' gradient and Vegas; the no-load
latency is measured as Envoy's adaptive concurrency filter does, by a short
probe at low concurrency. docs/policies/adaptive_concurrency.md has the formulas.
"""

from __future__ import annotations

import math
import random as _random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from .._clock import Clock
from .._context import CallContext
from .._errors import BulkheadFullError
from .._events import CallRejected, Event
from .._policy import AsyncHandler, Handler, Policy
from .._validate import at_least, clock_option, fail, fraction, optional_random, positive

__all__ = [
    "DEFAULT_ALGORITHM", "DEFAULT_INITIAL_LIMIT", "DEFAULT_MAX_LIMIT", "DEFAULT_MIN_LIMIT",
    "DEFAULT_MIN_SAMPLES", "DEFAULT_PROBE_INTERVAL", "DEFAULT_PROBE_JITTER",
    "DEFAULT_PROBE_SAMPLES", "DEFAULT_SMOOTHING", "DEFAULT_TOLERANCE", "DEFAULT_WINDOW",
    "AdaptiveConcurrency", "AdaptiveConcurrencyOptions", "ConcurrencyLimitChanged",
]

DEFAULT_INITIAL_LIMIT = 20
DEFAULT_MIN_LIMIT = 1
DEFAULT_MAX_LIMIT = 1000
Algorithm: TypeAlias = Literal["gradient", "vegas"]
DEFAULT_ALGORITHM: Algorithm = "gradient"
DEFAULT_TOLERANCE = 1.0
"""Latency may reach ``tolerance`` x no-load before the gradient shrinks the limit."""
DEFAULT_SMOOTHING: Mapping[str, float] = MappingProxyType({"gradient": 0.2, "vegas": 1.0})
"""Share of each computed change applied (Netflix's defaults for each algorithm)."""
DEFAULT_WINDOW = 0.1
"""Seconds of samples averaged per update (Envoy updates every 100 ms)."""
DEFAULT_MIN_SAMPLES = 10
DEFAULT_PROBE_INTERVAL = 60.0
DEFAULT_PROBE_SAMPLES = 20
DEFAULT_PROBE_JITTER = 0.1
"""Probes start up to 10% late at random, so replicas do not probe in step."""

_VEGAS_ALPHA, _VEGAS_BETA = 3, 6


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveConcurrencyOptions:
    """Validated options of :class:`AdaptiveConcurrency`."""

    initial_limit: int = DEFAULT_INITIAL_LIMIT
    min_limit: int = DEFAULT_MIN_LIMIT
    max_limit: int = DEFAULT_MAX_LIMIT
    algorithm: Algorithm = DEFAULT_ALGORITHM
    tolerance: float = DEFAULT_TOLERANCE
    smoothing: float | None = None
    queue_size: float | Callable[[float], float] | None = None
    window: float = DEFAULT_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    probe_interval: float | None = DEFAULT_PROBE_INTERVAL
    probe_samples: int = DEFAULT_PROBE_SAMPLES

    def __post_init__(self) -> None:
        owner, put = "AdaptiveConcurrency", object.__setattr__
        low = at_least(owner, "min_limit", self.min_limit, 1)
        at_least(owner, "initial_limit", self.initial_limit, low)
        at_least(owner, "max_limit", self.max_limit, self.initial_limit)
        if self.algorithm not in DEFAULT_SMOOTHING:
            fail(owner, "algorithm", self.algorithm, "'gradient' or 'vegas'")
        tolerance = positive(owner, "tolerance", self.tolerance)
        if tolerance < 1:
            fail(owner, "tolerance", self.tolerance, ">= 1")
        put(self, "tolerance", tolerance)
        smoothing = self.smoothing
        put(self, "smoothing", DEFAULT_SMOOTHING[self.algorithm] if smoothing is None
            else fraction(owner, "smoothing", smoothing))
        if self.queue_size is not None and not callable(self.queue_size):
            put(self, "queue_size", positive(owner, "queue_size", self.queue_size))
        put(self, "window", positive(owner, "window", self.window))
        at_least(owner, "min_samples", self.min_samples, 1)
        if self.probe_interval is not None:
            put(self, "probe_interval", positive(owner, "probe_interval", self.probe_interval))
        at_least(owner, "probe_samples", self.probe_samples, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyLimitChanged(Event):
    """The concurrency limit moved from ``old`` to ``new``.

    ``reason`` is ``"latency"`` (an update from a window of samples), ``"probe"``
    (pinned low to measure the no-load latency) or ``"probe_done"`` (restored).
    """

    old: int
    new: int
    reason: str


def _gradient(tolerance: float, queue: Callable[[float], float]
              ) -> Callable[[float, float, float], float]:
    def update(limit: float, no_load: float, rtt: float) -> float:
        gradient = max(0.5, min(1.0, tolerance * no_load / rtt))
        return limit * gradient + queue(limit)
    return update


def _vegas(limit: float, no_load: float, rtt: float) -> float:
    step = max(1, int(math.log10(limit)))
    queued = limit * (1.0 - no_load / rtt)
    if queued <= step:
        return limit + _VEGAS_BETA * step
    if queued < _VEGAS_ALPHA * step:
        return limit + step
    if queued > _VEGAS_BETA * step:
        # Netflix steps down by log10(limit); far above capacity, shed half the
        # excess queue at once so the way down takes a few windows, not hundreds.
        return limit - max(step, (queued - _VEGAS_BETA * step) / 2)
    return limit


class _Limiter:
    """The shared state: admission, samples, windows and probes, under one lock."""

    def __init__(self, o: AdaptiveConcurrencyOptions, rng: Callable[[], float]) -> None:
        size = o.queue_size
        self.queue: Callable[[float], float] = (
            math.sqrt if size is None else size if callable(size) else lambda _: size)
        self.update = (_gradient(o.tolerance, self.queue) if o.algorithm == "gradient"
                       else _vegas)
        self.o, self.rng, self.lock = o, rng, threading.Lock()
        self.smoothing = DEFAULT_SMOOTHING[o.algorithm] if o.smoothing is None else o.smoothing
        self.estimate, self.limit, self.in_flight = float(o.initial_limit), o.initial_limit, 0
        self.no_load: float | None = None
        self.w_start: float | None = None
        self.w_sum, self.w_count, self.w_most = 0.0, 0, 0
        self.probing, self.p_start, self.p_sum, self.p_count = False, 0.0, 0.0, 0
        self.probe_due = -math.inf if o.probe_interval is not None else math.inf

    def acquire(self) -> int:
        """Admit a call: the number in flight with it, or 0 when it is rejected."""
        with self.lock:
            n = self.in_flight
            if n >= self.limit:
                return 0
            self.in_flight = n + 1
            return n + 1

    def release(self, start: float, end: float, seen: int, sample: bool
                ) -> tuple[int, int, str] | None:
        """A call admitted at ``start`` with ``seen`` in flight ended at ``end``.
        Returns ``(old, new, reason)`` when the limit changed."""
        with self.lock:
            self.in_flight -= 1
            if not sample:
                return None
            if self.probing:
                return self._probe_sample(start, end)
            if end >= self.probe_due:
                self.probing, self.p_start, self.p_sum, self.p_count = True, end, 0.0, 0
                pinned = int(self.queue(self.estimate))
                return self._set(max(self.o.min_limit, min(self.limit, pinned)), "probe")
            if self.w_start is None:
                self.w_start = end
            self.w_sum += end - start
            self.w_count += 1
            self.w_most = max(self.w_most, seen)
            span = max(self.o.window, 2.0 * (self.no_load or 0.0))
            if self.w_count < self.o.min_samples or end - self.w_start < span:
                return None
            return self._close_window(end)

    def _probe_sample(self, start: float, end: float) -> tuple[int, int, str] | None:
        if start < self.p_start:
            return None  # admitted before the probe: it says nothing of no-load latency
        self.p_sum += end - start
        self.p_count += 1
        if self.p_count < self.o.probe_samples:
            return None
        self.no_load = self.p_sum / self.p_count
        self.probing, self.w_start, self.w_sum, self.w_count, self.w_most = (
            False, None, 0.0, 0, 0)
        interval = self.o.probe_interval or math.inf
        self.probe_due = end + interval * (1.0 + DEFAULT_PROBE_JITTER * self.rng())
        return self._set(int(self.estimate), "probe_done")

    def _close_window(self, end: float) -> tuple[int, int, str] | None:
        rtt, most = self.w_sum / self.w_count, self.w_most
        self.w_start, self.w_sum, self.w_count, self.w_most = end, 0.0, 0, 0
        if rtt <= 0.0:
            return None
        if self.no_load is None or rtt < self.no_load:
            self.no_load = rtt  # a window this fast proves the no-load latency is no higher
        if most < self.estimate / 2:
            return None  # too little traffic to tell whether the limit is right
        o, limit = self.o, self.estimate
        target = self.update(limit, self.no_load, rtt)
        limit += self.smoothing * (target - limit)
        self.estimate = max(o.min_limit, min(o.max_limit, limit))
        return self._set(int(self.estimate), "latency")

    def _set(self, new: int, reason: str) -> tuple[int, int, str] | None:
        old, self.limit = self.limit, new
        return None if old == new else (old, new, reason)


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
        self._state = _Limiter(self.options, (random or _random).random)

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
            finally:
                change = release(start, now(), seen, sample)
                if change is not None:
                    changed(ctx, change)

        return handle

    def __repr__(self) -> str:
        o = self.options
        return (f"AdaptiveConcurrency(algorithm={o.algorithm!r}, limit={self.limit}, "
                f"min_limit={o.min_limit}, max_limit={o.max_limit})")
