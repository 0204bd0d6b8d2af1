"""Chaos scenarios on real loopback backends: each breaks the backends of service
``users`` for a second under a steady load of GETs and POSTs, repairs them, and
checks that nothing was lost, no POST was sent twice and the mesh recovered (see
conftest.py). Figures: docs/chaos.md."""

from __future__ import annotations

import asyncio
import time

from chaos_harness import Scenario

from meshlite.testing import Chaos


async def test_error_burst(scenario: Scenario) -> None:
    await scenario.run(lambda: [b.set(error_rate=0.5) for b in scenario.backends],
                       lambda: [b.set(error_rate=0.0) for b in scenario.backends])
    scenario.report()
    scenario.check()
    assert scenario.events["retries"] > 0
    # Half the attempts failing is the breaker's threshold: it opens and sheds the load.
    assert scenario.events["breaker_opens"] >= 1


async def test_latency_spike(scenario: Scenario) -> None:
    await scenario.run(lambda: scenario.backends[0].set(latency=1.0),
                       lambda: scenario.backends[0].set(latency=0.0))
    scenario.report()
    scenario.check()
    assert scenario.events["ejections"] >= 1  # the slow backend was taken out
    assert scenario.rate("fault", "GET") >= 0.9


async def test_backend_killed_and_restarted(scenario: Scenario) -> None:
    await scenario.run(lambda: scenario.backends[1].set(down=True),
                       lambda: scenario.backends[1].set(down=False))
    scenario.report()
    scenario.check()
    assert scenario.events["ejections"] >= 1
    # A refused connection sent nothing, so even POSTs are safely retried elsewhere.
    assert scenario.rate("fault") >= 0.95


async def test_hanging_backend(scenario: Scenario) -> None:
    await scenario.run(lambda: scenario.backends[2].set(hang=True),
                       lambda: scenario.backends[2].set(hang=False))
    scenario.report()
    scenario.check()
    assert scenario.events["ejections"] >= 1
    assert scenario.rate("fault", "GET") >= 0.9


async def test_connection_resets(scenario: Scenario) -> None:
    await scenario.run(lambda: scenario.backends[0].set(reset=True),
                       lambda: scenario.backends[0].set(reset=False))
    scenario.report()
    scenario.check()
    assert scenario.events["retries"] > 0
    assert scenario.rate("fault", "GET") >= 0.9


async def test_every_backend_down_then_back(scenario: Scenario) -> None:
    await scenario.run(lambda: [b.set(down=True) for b in scenario.backends],
                       lambda: [b.set(down=False) for b in scenario.backends])
    scenario.report()
    scenario.check()
    assert scenario.rate("fault") < 0.5  # nothing to answer: clear errors instead
    assert scenario.events["breaker_opens"] >= 1


async def test_injected_faults(scenario: Scenario, chaos: Chaos) -> None:
    fault = None

    def start() -> None:
        nonlocal fault
        fault = chaos(scenario.mesh.service("users"), rate=0.2, error=ConnectionError, seed=1)

    await scenario.run(start, lambda: fault.remove() if fault else None)
    scenario.report()
    scenario.check()
    assert fault is not None
    assert fault.injected > 0
    assert scenario.events["retries"] > 0  # injected before sending: retried, POSTs too


async def test_a_run_the_process_stood_still_in_is_run_again(scenario: Scenario) -> None:
    """A pause of the whole process (here the event loop blocked for 0.4 s during the
    first run's fault) is the machine's doing: that run is checked for what no pause
    excuses and discarded, and the scenario runs again on fresh backends."""
    first = scenario.backends

    def fault() -> None:
        scenario.backends[1].set(down=True)
        if scenario.runs == 1:
            asyncio.get_running_loop().call_later(0.1, time.sleep, 0.4)

    await scenario.run(fault, lambda: scenario.backends[1].set(down=False))
    scenario.check()
    assert scenario.runs == 2
    assert scenario.stalls == []
    assert not set(scenario.backends) & set(first)
    assert scenario.rate("fault") >= 0.95
