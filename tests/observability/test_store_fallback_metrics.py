"""Decisions a policy takes without its shared store (Redis down) are counted in the
mesh's own metrics: ``/metrics`` (Prometheus text) and the OTLP export (real
OTLP/HTTP protobuf to a loopback receiver)."""

from __future__ import annotations

import pytest
from _system import free_port
from otlp_receiver import OtlpReceiver

import meshlite as ml
from meshlite import telemetry
from meshlite.observability import render

pytest.importorskip("redis")


def closed_port() -> int:
    """A loopback port nothing listens on: a Redis that is down (connection refused)."""
    return free_port()  # (outside the ephemeral range: no server started meanwhile gets it)


@pytest.fixture
def mesh() -> ml.Mesh:
    from meshlite.state import RedisStore

    store = RedisStore(f"redis://127.0.0.1:{closed_port()}/0", on_error="local",
                       retry_interval=60.0)
    breaker = ml.CircuitBreaker(store=store, name="users-db")
    return ml.Mesh([ml.Service("users", ["a"], pipeline=ml.Pipeline(breaker))])


def test_fallbacks_are_in_the_prometheus_exposition(mesh: ml.Mesh) -> None:
    for _ in range(4):
        assert mesh.call_sync("users", lambda b: b.address) == "a"  # decided locally
    text = render(mesh)
    assert '# TYPE meshlite_store_fallbacks_total counter' in text
    line = ('meshlite_store_fallbacks_total{service="users",policy="circuit_breaker",'
            'action="local"} ')
    [value] = [x.removeprefix(line) for x in text.splitlines() if x.startswith(line)]
    assert float(value) == 4  # each call's decision; its outcome is not recorded twice


def test_fallbacks_reach_the_otlp_export(mesh: ml.Mesh,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    with OtlpReceiver() as receiver:
        # started before any fallback: a family that appears later is pushed too
        with telemetry.export_metrics(mesh, otlp_endpoint=receiver.url,
                                      interval=3600) as export:
            for _ in range(3):
                mesh.call_sync("users", lambda b: b.address)
            assert export.force_flush()
        point = receiver.latest("meshlite.store.fallbacks", **{
            "meshlite.service": "users", "meshlite.policy": "circuit_breaker",
            "meshlite.action": "local"})
    assert (point.kind, point.unit, point.value, point.monotonic) == (
        "sum", "{decision}", 3, True)
