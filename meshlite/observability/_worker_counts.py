"""Each service's call counts in one worker and summed over the host, read from the
worker files of the shared directory (``_multiproc``): what the dashboard shows per
worker and per host."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._multiproc import WorkerFile

__all__ = ["Counts", "host_counts", "worker_counts"]


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


def worker_counts(worker: WorkerFile) -> dict[str, Counts]:
    """One worker's :class:`Counts` by service."""
    out: dict[str, Counts] = {}
    for f in worker.families:
        field = _COUNTED.get(f.name)
        if field is None:
            continue
        for s in f.samples:
            service = dict(s.labels).get("service")
            if service is not None:
                counts = out.get(service)
                if counts is None:
                    counts = out[service] = Counts()
                setattr(counts, field, getattr(counts, field) + int(s.value))
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
