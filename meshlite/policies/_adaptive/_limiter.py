"""The adaptive limit itself: admission, latency samples in windows, no-load probes,
and the gradient and Vegas rules that move the limit (the formulas are in
docs/policies/adaptive_concurrency.md)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from ..._fork import after_fork_in_child, fork_safe
from ._options import DEFAULT_PROBE_JITTER, DEFAULT_SMOOTHING, AdaptiveConcurrencyOptions

__all__ = ["Limiter"]

_VEGAS_ALPHA, _VEGAS_BETA = 3, 6


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


class Limiter:
    """The shared state: admission, samples, windows and probes, under one lock."""

    def __init__(self, o: AdaptiveConcurrencyOptions, rng: Callable[[], float]) -> None:
        size = o.queue_size
        self.queue: Callable[[float], float] = (
            math.sqrt if size is None else size if callable(size) else lambda _: size)
        self.update = (_gradient(o.tolerance, self.queue) if o.algorithm == "gradient"
                       else _vegas)
        self.o, self.rng, self.lock = o, rng, fork_safe(threading.Lock())
        self.smoothing = DEFAULT_SMOOTHING[o.algorithm] if o.smoothing is None else o.smoothing
        self.estimate, self.limit, self.in_flight = float(o.initial_limit), o.initial_limit, 0
        self.no_load: float | None = None
        self.w_start: float | None = None
        self.w_sum, self.w_count, self.w_most = 0.0, 0, 0
        self.probing, self.p_start, self.p_sum, self.p_count = False, 0.0, 0.0, 0
        self.probe_due = -math.inf if o.probe_interval is not None else math.inf
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: nothing in flight (the parent's calls never end here;
        one of the thread that forked does, and is not counted below zero)."""
        self.in_flight = 0

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
            if self.in_flight:  # 0: a call running when this child was forked
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
        if self.p_sum > 0.0:  # instant calls (a clock too coarse or fake) teach nothing,
            self.no_load = self.p_sum / self.p_count  # as a window of them does not
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
        o, limit = self.o, self.estimate
        if most < limit / 2:
            # Too little traffic to test the limit, so it must not grow. But latency
            # that shows queueing at `most` calls in flight proves the service cannot
            # take even `most`: the limit comes down towards what `most` justifies,
            # or it would stay far above capacity while every call queued.
            target = self.update(float(most), self.no_load, rtt)
            if target >= most:
                return None
        else:
            target = self.update(limit, self.no_load, rtt)
        limit += self.smoothing * (target - limit)
        self.estimate = max(o.min_limit, min(o.max_limit, limit))
        return self._set(int(self.estimate), "latency")

    def _set(self, new: int, reason: str) -> tuple[int, int, str] | None:
        old, self.limit = self.limit, new
        return None if old == new else (old, new, reason)
