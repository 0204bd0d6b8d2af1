"""What an alert rule's window keeps of each second: counts, and the latencies a
``p99`` rule reads, compactly; not the second's snapshot and health, nor its
latencies as float objects (a 300 s ``p99`` rule held some 16 MB a service of 50
backends)."""

from __future__ import annotations

import tracemalloc
from typing import Any

import meshlite as ml
from meshlite.observability._dashboard import AlertRule, Alerts
from meshlite.observability._dashboard._history import ServiceSecond
from meshlite.observability._dashboard._measure import measure
from meshlite.routing._endpoint import percentile

BACKENDS = 50
SECONDS = 60
SAMPLES = 1024  # the most a second keeps (MAX_SAMPLES_PER_SECOND)


def _seconds() -> list[ServiceSecond]:
    mesh = ml.Mesh([ml.Service("users", [f"http://10.0.0.{i}:80" for i in range(BACKENDS)],
                               pipeline=ml.Pipeline())])
    snapshot, health = mesh.snapshot()["users"], mesh.health()["users"]
    return [_second(second, _latencies(second), snapshot, health) for second in range(SECONDS)]


def _latencies(second: int) -> tuple[float, ...]:
    return tuple((second * SAMPLES + i) / 1e6 for i in range(SAMPLES))


def _second(second: int, samples: tuple[float, ...], snapshot: Any, health: Any
            ) -> ServiceSecond:
    return ServiceSecond(name="users", second=second, requests=SAMPLES, errors=0, p50=None,
                         p99=None, samples=samples, snapshot=snapshot, health=health)


def _held(alerts: Alerts, seconds: list[ServiceSecond]) -> int:
    """Bytes the alerts still hold after evaluating ``seconds`` (the seconds
    themselves dropped: new snapshots, as the sampler makes each second)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for s in seconds:
            # made in the second, as the sampler makes them: what the window keeps of it
            alerts.evaluate(float(s.second), [_second(
                s.second, _latencies(s.second), s.snapshot, s.health)])
        seconds.clear()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_p99_window_keeps_its_latencies_compactly() -> None:
    seconds = _seconds()
    expected = percentile(sorted(x for s in seconds for x in s.samples), 0.99)
    alerts = Alerts([AlertRule("slow", "p99", threshold=10.0, window=SECONDS,
                               min_requests=1)])
    latest = seconds[-1]
    held = _held(alerts, seconds)
    # 8 bytes a latency, and a little per second: under 1.5x the latencies' own size
    # (their float objects and tuples took 4x, the seconds' snapshots more)
    assert held < 1.5 * SECONDS * SAMPLES * 8, held
    # and the rule reads the same p99 from them
    assert measure(alerts.rules[0], alerts._windows["users"], latest) == (expected, False)


def test_a_window_without_p99_rules_keeps_no_latencies() -> None:
    alerts = Alerts([AlertRule("errors", "error_rate", threshold=0.5, window=SECONDS)])
    held = _held(alerts, _seconds())
    assert held < SECONDS * 1024, held  # counts only: well under a KB a second
