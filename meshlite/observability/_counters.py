"""Counters and gauges of rare events (retries, rejections, ejections, breaker
states...): one dict of series per metric under one lock, which a rare event can
afford (per-call latencies go to :class:`~._metrics.Timings`, which takes none)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .._fork import fork_safe
from ._metrics import MetricFamily, Sample

__all__ = ["Counters"]


class Counters:
    """Counters and gauges of rare events: ``{metric name: {label values: value}}``
    under one lock (a rare event can afford it).

    Args:
        declared: ``{metric name: (type, help, label names)}`` of every metric it may
            hold; :meth:`collect` reports them in this order.
    """

    def __init__(self, declared: dict[str, tuple[str, str, tuple[str, ...]]]) -> None:
        self.declared = declared
        self._values: dict[str, dict[tuple[str, ...], float]] = {n: {} for n in declared}
        self._lock = fork_safe(threading.Lock())
        self.per_backend: dict[str, tuple[str, ...]] = {}
        """Per service: the counters labelled ``(service, backend)`` made at 0 for each
        of its backends, those added later too (see ``_feed.touch_backends``)."""

    def add(self, name: str, values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``name`` of label values ``values``."""
        series = self._values[name]
        with self._lock:
            series[values] = series.get(values, 0.0) + amount

    def set(self, name: str, values: tuple[str, ...], value: float) -> None:
        """Set gauge ``name`` of label values ``values``."""
        series = self._values[name]
        with self._lock:
            series[values] = value

    def touch(self, name: str, values: tuple[str, ...]) -> None:
        """Make the series exist at 0 (Prometheus: initialise known counters)."""
        series = self._values[name]
        with self._lock:
            series.setdefault(values, 0.0)

    def drop(self, first: str) -> None:
        """Forget every series whose first label value is ``first`` (a service the
        mesh no longer has), so it leaves the exposition and frees its memory (a
        scan of every series: once a removed service drained, never per event)."""
        with self._lock:
            for series in self._values.values():
                for values in [v for v in series if v and v[0] == first]:
                    del series[values]
            self.per_backend.pop(first, None)

    def forget(self, names: Iterable[str], values: tuple[str, ...]) -> None:
        """Forget the series of label values ``values`` of each metric in ``names``
        (a backend its service no longer has)."""
        with self._lock:
            for name in names:
                self._values[name].pop(values, None)

    def value(self, name: str, values: tuple[str, ...]) -> float:
        """The current value (0.0 if never recorded)."""
        with self._lock:
            return self._values[name].get(values, 0.0)

    def collect(self) -> list[MetricFamily]:
        """Every declared metric that has at least one series."""
        with self._lock:
            copies = {name: dict(series) for name, series in self._values.items()}
        families = []
        for name, (kind, help_text, label_names) in self.declared.items():
            series = copies[name]
            if series:
                families.append(MetricFamily(name, kind, help_text, tuple(
                    Sample("", tuple(zip(label_names, values, strict=True)), value)
                    for values, value in sorted(series.items()))))
        return families
