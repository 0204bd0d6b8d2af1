"""Each service's call counts in one worker and summed over the host, read from the
worker files of the shared directory (``_worker_files``): what the dashboard shows per
worker and per host."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ._worker_files import WorkerFile

T = TypeVar("T")

__all__ = ["Counts", "host_counts", "labelled", "worker_counts"]


@dataclass(slots=True)
class Counts:
    """A service's counters in one worker (or summed over the host)."""

    calls: int = 0
    failed: int = 0
    retries: int = 0
    attempts: int = 0
    attempt_errors: int = 0


_COUNTED = {"meshlite_requests_total": "calls", "meshlite_request_errors_total": "failed",
            "meshlite_retries_total": "retries",
            "meshlite_backend_requests_total": "attempts",
            "meshlite_backend_errors_total": "attempt_errors"}


def labelled(worker: WorkerFile, wanted: Mapping[str, T], label: str
             ) -> Iterator[tuple[T, str, float]]:
    """``(wanted[family], the sample's label value, its value)`` for each sample of
    ``worker``'s families named in ``wanted`` that carries ``label``."""
    for f in worker.families:
        slot = wanted.get(f.name)
        if slot is None:
            continue
        for s in f.samples:
            value = dict(s.labels).get(label)
            if value is not None:
                yield slot, value, s.value


def worker_counts(worker: WorkerFile) -> dict[str, Counts]:
    """One worker's :class:`Counts` by service."""
    out: dict[str, Counts] = {}
    for field, service, value in labelled(worker, _COUNTED, "service"):
        counts = out.get(service)
        if counts is None:
            counts = out[service] = Counts()
        setattr(counts, field, getattr(counts, field) + int(value))
    return out


def host_counts(workers: Iterable[WorkerFile]) -> dict[str, Counts]:
    """Every worker's :class:`Counts` summed, by service."""
    out: dict[str, Counts] = {}
    for w in workers:
        for service, c in worker_counts(w).items():
            total = out.setdefault(service, Counts())
            total.calls += c.calls
            total.failed += c.failed
            total.retries += c.retries
            total.attempts += c.attempts
            total.attempt_errors += c.attempt_errors
    return out
