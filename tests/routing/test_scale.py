"""Work that must not grow faster than the number of backends: bounds on the
operations routing makes at 100s of backends (counts, never timings)."""

from __future__ import annotations

from typing import Any

import meshlite as ml
from meshlite.routing import Service
from meshlite.testing import FakeClock


class _CountingTuple(tuple):  # type: ignore[type-arg]
    """A tuple that counts membership tests (``x in t``, a scan of it each)."""

    contains = 0

    def __contains__(self, item: object) -> bool:
        type(self).contains += 1
        return tuple.__contains__(self, item)


def addresses(n: int) -> list[str]:
    return [f"http://127.0.0.1:{10000 + i}" for i in range(n)]


def test_ejecting_every_backend_by_hand_scans_the_backends_a_bounded_number_of_times() -> None:
    # Each manual ejection used to test every endpoint ejected by hand so far
    # against the backend tuple: O(n) scans per ejection, O(n^2) per change.
    n = 200
    service = Service("s", addresses(n), pipeline=ml.Pipeline(), clock=FakeClock(),
                      outlier_detection=None)
    counted: Any = _CountingTuple(service._endpoints)
    service._endpoints = counted
    _CountingTuple.contains = 0
    for address in addresses(n):
        service.eject(address)
    assert _CountingTuple.contains <= n
    assert all(service.restore(a) for a in addresses(n))
    assert not service.panic
    assert len(service._available) == n
