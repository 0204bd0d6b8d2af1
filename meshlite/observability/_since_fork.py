"""A forked worker's own counts: what it counted since the fork.

A child forked from a process that had made calls (a Celery prefork pool,
``multiprocessing`` with the fork start method, gunicorn's ``preload_app``) starts
with a copy of its parent's counters. With a shared directory the parent's file
already holds those calls, so the child's file must not repeat them: just before a
fork the parent notes its counters and histograms (:func:`totals`), and the child
writes each less its value at the fork (:func:`since`). Gauges are the child's
own readings, as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ._metrics import Labels, MetricFamily, Sample

__all__ = ["Totals", "since", "totals"]

Totals = dict[tuple[str, str, Labels], float]
"""Counter and histogram values by family name, sample suffix and labels."""


def totals(families: Iterable[MetricFamily]) -> Totals:
    """The counter and histogram values of ``families``, by series."""
    return {(f.name, s.suffix, s.labels): s.value
            for f in families if f.type != "gauge" for s in f.samples}


def since(families: Iterable[MetricFamily], before: Totals) -> Iterator[MetricFamily]:
    """``families`` with each counter and histogram value less its value in
    ``before`` (a series new since then is as it is)."""
    for f in families:
        if f.type == "gauge":
            yield f
            continue
        yield MetricFamily(f.name, f.type, f.help, tuple(
            Sample(s.suffix, s.labels, s.value - before.get((f.name, s.suffix, s.labels), 0.0))
            for s in f.samples))
