"""The ``scenario`` fixture of the chaos suite (the harness: chaos_harness.py)."""

from __future__ import annotations

import pytest
from chaos_harness import BACKENDS, EJECTION_SECONDS, Scenario, pipeline

import meshlite as ml
from meshlite.testing import BackendFactory, FakeBackend, MeshFactory


@pytest.fixture(params=["http", "aiohttp"])
def scenario(request: pytest.FixtureRequest, fake_backend: BackendFactory,
             mesh: MeshFactory) -> Scenario:
    """A Scenario named after the test, on three fresh FakeBackends (fresh ones again
    for each run it repeats), its load sent through ``mesh.http()`` and, in a second
    run, ``mesh.aiohttp()``; its figures are reported when the test passed its
    checks."""

    def build() -> tuple[ml.Mesh, list[FakeBackend], ml.CircuitBreaker]:
        backends = [fake_backend() for _ in range(BACKENDS)]
        chain, breaker = pipeline()
        service = ml.Service(
            "users", [b.url for b in backends], balancer="round_robin", pipeline=chain,
            outlier_detection=ml.OutlierDetection(
                consecutive_failures=3, base_ejection_seconds=EJECTION_SECONDS,
                max_ejection_seconds=2 * EJECTION_SECONDS))
        return mesh(service), backends, breaker

    return Scenario(request.node.name.removeprefix("test_"), build, client=request.param)
