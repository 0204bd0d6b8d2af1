"""What docs/testing.md ("FakeClock") says a mesh's clock drives: its services'
routing and injected faults, not the policies of their pipelines, which run on the
clock each was built with. So a chaos test gives the policies the clock too."""

from __future__ import annotations

import time

import pytest

import meshlite as ml
from meshlite._clock import SYSTEM_CLOCK
from meshlite.testing import Chaos, FakeClock


async def test_a_policy_built_without_a_clock_keeps_the_system_clock_in_a_fake_mesh(
) -> None:
    clock = FakeClock()
    timeout, retry = ml.Timeout(2.0), ml.Retry(attempts=2)
    service = ml.Service("users", ["http://127.0.0.5:8000"],
                         pipeline=ml.Pipeline(timeout, retry))
    mesh = ml.Mesh([service], clock=clock)
    assert service.clock is clock
    assert (timeout.clock, retry.clock) == (SYSTEM_CLOCK, SYSTEM_CLOCK)
    # The false pass the docs warn of: the latency passes on the fake clock, which
    # the Timeout does not read, and the call returns normally.
    Chaos()(service, latency=10.0)
    started = time.monotonic()
    assert await mesh.call("users", lambda backend: backend.address) == "http://127.0.0.5:8000"
    assert time.monotonic() - started < 5.0
    assert clock.monotonic() == 10.0
    await mesh.aclose()


async def test_a_timeout_given_the_mesh_s_clock_cuts_injected_latency() -> None:
    clock = FakeClock()
    service = ml.Service("users", ["http://127.0.0.5:8000"],
                         pipeline=ml.Pipeline(ml.Timeout(2.0, clock=clock)))
    mesh = ml.Mesh([service], clock=clock)
    fault = Chaos()(service, latency=10.0)
    with pytest.raises(ml.TimeoutExceeded):
        await mesh.call("users", lambda backend: backend.address)
    assert clock.monotonic() == 2.0
    assert fault.injected == 1
    await mesh.aclose()
