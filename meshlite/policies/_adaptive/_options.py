"""AdaptiveConcurrency's validated options, ``DEFAULT_*`` constants and its event."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeAlias

from ..._events import Event
from ..._validate import at_least, fail, fraction, positive

__all__ = [
    "DEFAULT_ALGORITHM", "DEFAULT_INITIAL_LIMIT", "DEFAULT_MAX_LIMIT", "DEFAULT_MIN_LIMIT",
    "DEFAULT_MIN_SAMPLES", "DEFAULT_PROBE_INTERVAL", "DEFAULT_PROBE_JITTER",
    "DEFAULT_PROBE_SAMPLES", "DEFAULT_SMOOTHING", "DEFAULT_TOLERANCE", "DEFAULT_WINDOW",
    "Algorithm", "AdaptiveConcurrencyOptions", "ConcurrencyLimitChanged",
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
