"""What the exited workers' file (``meshlite-exited.json``) keeps: the counters of
every worker that exited, within the bounds one live worker keeps its own to.

A worker keeps the series of the backends its services have now, at most 256
calling services by name, 256 operations per service (``ml.Metrics``, registered in
the mesh) and 64 error kinds per series, and folds or drops the rest. The exited
file sums the workers that exited one after the other, each with its own backends
(discovery moved the pods on meanwhile), its own callers (forged names), operations
and error kinds, so without the same bounds it would keep every label any worker
ever had, and each scrape would read and render them all (gunicorn's
``max_requests`` restarts workers all day). So at each fold:

- a series labelled with a ``backend`` stays while a live worker still reports that
  backend of that service, as a live worker drops a removed backend's series (its
  counts then start again from zero, a counter reset to Prometheus);
- callers (``meshlite_server_caller_*``) and each service's operations
  (``meshlite_operation_*``) keep their names up to the bound, those the live
  workers report first, then the busiest; the others count under ``(other)``, their
  totals kept;
- each series keeps at most ``MAX_ERROR_LABELS`` ``error`` values, the most
  frequent; the others count under ``(other)``, their totals kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._metrics import MAX_ERROR_LABELS, OTHER_ERROR, MetricFamily, Sample
from ._policy import DEFAULT_MAX_OPERATIONS, OTHER_OPERATION
from ._prometheus import _merge

__all__ = ["bounded"]

Labels = tuple[tuple[str, str], ...]


def _capped() -> tuple[tuple[str, tuple[str, ...], str | None, int, str], ...]:
    """(label, its families (the first counts calls), the label whose values it is
    kept per, names kept (a negative number: that many, or as many as the live
    workers report if more: an ``ml.Metrics`` may keep more operations), the name of
    the rest)."""
    # (imported here: the inbound stats import this package's metric records)
    from .._inbound._stats import MAX_CALLERS, OTHER_CALLER

    return (("caller", ("meshlite_server_caller_requests_total",
                        "meshlite_server_caller_errors_total"), None, MAX_CALLERS, OTHER_CALLER),
            ("operation", tuple(f"meshlite_operation_{n}" for n in (
                "requests_total", "request_errors_total", "request_duration_seconds")),
             "service", -DEFAULT_MAX_OPERATIONS, OTHER_OPERATION))


def bounded(exited: list[MetricFamily], live: list[MetricFamily]) -> list[MetricFamily]:
    """The exited workers' counters ``exited`` (merged), bounded as a live worker
    bounds its own, given what the live workers report now (``live``: their files'
    families and the folding worker's own; with none, no backend's series is
    dropped)."""
    backends = {(d.get("service"), d["backend"]) for _, d, _ in _labels(live) if "backend" in d}
    renames = [(label, set(families), per,
                _kept(exited, live, label, families, per, most, other), other)
               for label, families, per, most, other in _capped()]
    out = []
    for family in exited:
        samples = []
        for s in family.samples:
            labels = dict(s.labels)
            backend = labels.get("backend")
            if (backend is not None and live
                    and (labels.get("service"), backend) not in backends):
                continue  # a backend no live worker has: its series went with it
            for label, families, per, kept, other in renames:
                name = labels.get(label)
                if (name is not None and family.name in families
                        and name not in kept.get(labels.get(per or ""), ())):
                    s = Sample(s.suffix, _with(s.labels, label, other), s.value)
            samples.append(s)
        out.append(MetricFamily(family.name, family.type, family.help,
                                _fold_errors(tuple(samples))))
    return _merge(out)


def _labels(families: Iterable[MetricFamily]
            ) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in families:
        for s in family.samples:
            yield family.name, dict(s.labels), s.value


def _with(labels: Labels, name: str, value: str) -> Labels:
    return tuple((k, value if k == name else v) for k, v in labels)


def _kept(exited: list[MetricFamily], live: list[MetricFamily], label: str,
          families: tuple[str, ...], per: str | None, most: int, other: str
          ) -> dict[str | None, set[str]]:
    """The values of ``label`` the exited file keeps (``other`` aside), per value of
    ``per``: at most ``most`` (see :func:`_capped`), those the live workers report
    first, then the busiest (by the count of ``families[0]``)."""
    counted: dict[str | None, dict[str, float]] = {}
    for name, labels, count in _labels(f for f in exited if f.name in families):
        value = labels.get(label)
        if value is not None and value != other:
            calls = counted.setdefault(labels.get(per or ""), {})
            calls[value] = calls.get(value, 0.0) + (count if name == families[0] else 0.0)
    reported: dict[str | None, set[str]] = {}
    for _, labels, _ in _labels(f for f in live if f.name in families):
        if label in labels:
            reported.setdefault(labels.get(per or ""), set()).add(labels[label])
    kept = {}
    for group, calls in counted.items():
        known = reported.get(group, set())
        ranked = sorted(calls, key=lambda v: (v not in known, -calls[v], v))
        kept[group] = set(ranked[:max(-most, len(known)) if most < 0 else most])
    return kept


def _fold_errors(samples: tuple[Sample, ...]) -> tuple[Sample, ...]:
    """``samples`` with at most :data:`MAX_ERROR_LABELS` ``error`` values per series
    (the same labels but ``error``): the most frequent; the others as ``(other)``."""
    groups: dict[tuple[object, ...], dict[str, float]] = {}
    for s in samples:
        labels = dict(s.labels)
        error = labels.pop("error", None)
        if error is not None and error != OTHER_ERROR:
            errors = groups.setdefault((s.suffix, *sorted(labels.items())), {})
            errors[error] = errors.get(error, 0.0) + s.value
    crowded = {k: set(sorted(v, key=lambda e: (-v[e], e))[:MAX_ERROR_LABELS])
               for k, v in groups.items() if len(v) > MAX_ERROR_LABELS}
    if not crowded:
        return samples
    out = []
    for s in samples:
        labels = dict(s.labels)
        error = labels.pop("error", None)
        kept = crowded.get((s.suffix, *sorted(labels.items())))
        if error is not None and kept is not None and error != OTHER_ERROR and error not in kept:
            s = Sample(s.suffix, _with(s.labels, "error", OTHER_ERROR), s.value)
        out.append(s)
    return tuple(out)
