"""Server-side RED metrics per route and the services that call this one.

Recorded on the event loop that runs the app (one thread), so plain dict updates
suffice; a scrape from another thread copies the dicts first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._histogram import FOLD_AT, Histogram
from .._semconv import KNOWN_METHODS, OTHER_METHOD
from ..observability._metrics import (
    DEFAULT_LATENCY_BUCKETS,
    MetricFamily,
    Sample,
    TimingsReading,
    histogram_samples,
)

__all__ = ["CALLER_IDLE_SECONDS", "DEFAULT_RATE_WINDOW", "MAX_CALLERS", "OTHER_CALLER",
           "InboundStats", "Series", "method_label"]

DEFAULT_RATE_WINDOW = 60
"""Seconds over which the callers' request and error rates are averaged."""

MAX_CALLERS = 256
"""Distinct caller names kept (a forged header cannot grow this); the exited workers'
file of a shared directory keeps as many (``observability._exited``)."""

OTHER_CALLER = "(other)"
"""The edge that counts callers arriving while :data:`MAX_CALLERS` names are kept
(no valid caller name has parentheses, so no real one can be taken for it)."""

CALLER_IDLE_SECONDS = 600
"""Seconds after its last request a caller's edge may be forgotten to make room for
a new one, so names a forged header filled the table with, then left, do not keep
real callers out for good (names a client keeps sending do: the header is its say-so)."""



def method_label(method: str, named: frozenset[str] | None) -> str:
    """The ``method`` label of a request: its method when standard or one its route
    names (``named``), else :data:`OTHER_METHOD`, so that a client sending made-up
    methods cannot add series without end."""
    if method in KNOWN_METHODS or (named is not None and method in named):
        return method
    return OTHER_METHOD


class _Edge:
    """Requests and errors from one caller: totals and per-second counts over the
    last :data:`DEFAULT_RATE_WINDOW` seconds."""

    __slots__ = ("errors", "last", "requests", "slots")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.last = 0
        self.slots: dict[int, list[int]] = {}

    def add(self, second: int, error: bool) -> None:
        self.requests += 1
        self.last = second
        self.errors += error
        slot = self.slots.get(second)
        if slot is None:
            slot = self.slots[second] = [0, 0]
            for old in [s for s in self.slots if s <= second - DEFAULT_RATE_WINDOW]:
                del self.slots[old]
        slot[0] += 1
        slot[1] += error

    def rates(self, now: int) -> tuple[float, float]:
        recent = [v for s, v in list(self.slots.items()) if s > now - DEFAULT_RATE_WINDOW]
        return (sum(v[0] for v in recent) / DEFAULT_RATE_WINDOW,
                sum(v[1] for v in recent) / DEFAULT_RATE_WINDOW)


class Series:
    """One (route, method): its latency histogram and its answers by status."""

    __slots__ = ("histogram", "pending", "statuses")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.histogram = Histogram(bounds)
        self.pending = self.histogram.pending  # the same list for its whole life
        self.statuses: dict[int, int] = {}

    def add(self, status: int, seconds: float) -> None:
        """Count one answer (``Histogram.observe`` inlined: one call less on every
        request)."""
        pending = self.pending
        pending.append(seconds)
        if len(pending) >= FOLD_AT:
            self.histogram.fold()
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1


class InboundStats:
    """What the middleware counts; ``collect()`` makes it a Prometheus collector,
    exposed with its mesh's metrics when the middleware has one. Times are
    ``time.monotonic()`` seconds."""

    def __init__(self) -> None:
        self.bounds = DEFAULT_LATENCY_BUCKETS
        self._series: dict[tuple[str, str], Series] = {}
        self._routes: frozenset[str] | None = None  # the route labels kept (None: all)
        self._callers: dict[str, _Edge] = {}
        self._swept = -CALLER_IDLE_SECONDS  # when idle callers were last forgotten

    def series(self, route: str, method: str) -> Series:
        """The series of one (route, method), made on first use; a caller may keep
        it and :meth:`Series.add` to it directly (the middleware's common path). A
        route :meth:`keep` left out gets a series of its own that is not kept."""
        series = self._series.get((route, method))
        if series is None:
            series = Series(self.bounds)
            if self._routes is None or route in self._routes:
                self._series[(route, method)] = series
        return series

    def keep(self, routes: Iterable[str]) -> None:
        """Keep the series of ``routes`` (route labels; ``*``, the requests no route
        matches, always) and forget the others: routes a reload removed leave the
        exposition and free their memory, and a request of theirs still running
        when it ends does not bring them back."""
        kept = self._routes = frozenset((*routes, "*"))
        for key in [k for k in list(self._series) if k[0] not in kept]:
            del self._series[key]

    def record(self, route: str, method: str, status: int, seconds: float,
               caller: str | None, now: float) -> None:
        """Count one finished request (``status`` 0: it ended without an answer)."""
        self.series(route, method).add(status, seconds)
        if caller is not None:
            edge = self._callers.get(caller)
            if edge is None:
                edge = self._edge(caller, int(now))
            edge.add(int(now), status >= 500 or status == 0)

    def _edge(self, caller: str, second: int) -> _Edge:
        """A new caller's edge: its own while fewer than :data:`MAX_CALLERS` are
        kept (after forgetting the idle ones, at most once a second), else
        :data:`OTHER_CALLER`'s."""
        callers = self._callers
        if len(callers) >= MAX_CALLERS and second > self._swept:
            self._swept = second
            for name in [n for n, e in callers.items()
                         if e.last <= second - CALLER_IDLE_SECONDS]:
                del callers[name]
        if len(callers) >= MAX_CALLERS:
            caller = OTHER_CALLER
        edge = callers.get(caller)
        if edge is None:
            edge = callers[caller] = _Edge()
        return edge

    def routes(self) -> list[dict[str, Any]]:
        """Each (route, method): requests, answers by status, refusals (4xx and 5xx
        the middleware or the app gave) and the mean latency in seconds."""
        out = []
        for (route, method), one in sorted(dict(self._series).items()):
            buckets, total = one.histogram.read()
            count = sum(buckets)
            statuses = dict(one.statuses)
            out.append({"route": route, "method": method, "requests": sum(statuses.values()),
                        "statuses": {str(k): v for k, v in sorted(statuses.items())},
                        "refused": sum(v for k, v in statuses.items() if k >= 400 or k == 0),
                        "mean_seconds": total / count if count else None})
        return out

    def callers(self, now: float) -> list[dict[str, Any]]:
        """Each service that called this one: totals and rates per second."""
        out = []
        for name, edge in sorted(dict(self._callers).items()):
            rate, error_rate = edge.rates(int(now))
            out.append({"caller": name, "requests": edge.requests, "errors": edge.errors,
                        "request_rate": rate, "error_rate": error_rate})
        return out

    def collect(self) -> Iterable[MetricFamily]:
        """The server-side metrics, read now."""
        series = sorted(dict(self._series).items())
        yield MetricFamily("meshlite_server_requests_total", "counter",
                           "Requests answered, by route, method and status.",
                           tuple(Sample("", (("route", r), ("method", m), ("status", str(s))),
                                        n) for (r, m), one in series
                                 for s, n in sorted(dict(one.statuses).items())))
        samples: list[Sample] = []
        for (route, method), one in series:
            buckets, total = one.histogram.read()
            samples += histogram_samples((("route", route), ("method", method)),
                                         self.bounds, TimingsReading(buckets, total, 0, {}))
        yield MetricFamily("meshlite_server_request_duration_seconds", "histogram",
                           "Time to answer a request, by route and method.", tuple(samples))
        edges = sorted(dict(self._callers).items())
        yield MetricFamily("meshlite_server_caller_requests_total", "counter",
                           "Requests from each calling mesh service.",
                           tuple(Sample("", (("caller", c),), e.requests) for c, e in edges))
        yield MetricFamily("meshlite_server_caller_errors_total", "counter",
                           "Requests from each calling mesh service answered 5xx or "
                           "left unanswered (status 0: the caller gone).",
                           tuple(Sample("", (("caller", c),), e.errors) for c, e in edges))
