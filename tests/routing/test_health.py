"""Active health checks: probes, thresholds, timeouts, events, the background loop."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

import meshlite as ml
from meshlite.routing import Backend, HealthCheck, HealthChecker, HttpHealthCheck, Service
from meshlite.testing import FakeClock


class Script:
    """An async probe answering from a per-backend script of results."""

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0
        self.tenth_call = asyncio.Event()

    async def __call__(self, backend: Backend) -> Any:
        self.calls += 1
        if self.calls == 10:
            self.tenth_call.set()
        answer = self.answers[backend.address].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def checker(probe: Any, clock: FakeClock, **options: Any) -> tuple[HealthChecker, list[ml.Event]]:
    check = HealthCheck(probe, **options)
    service = Service("s", ["a", "b"], pipeline=ml.Pipeline(), health_check=check, clock=clock)
    events: list[ml.Event] = []
    service.add_hook(events.append)
    (runner,) = service.components
    assert isinstance(runner, HealthChecker)
    return runner, events


def statuses(runner: HealthChecker) -> list[bool]:
    return [e.healthy for e in runner.target.endpoints]


async def test_thresholds(clock: FakeClock) -> None:
    probe = Script(a=[False, False, True, True], b=[True, False, True, True])
    runner, events = checker(probe, clock, unhealthy_threshold=2, healthy_threshold=2)
    await runner.open()  # probe on demand, without the background loop
    try:
        await runner.run_once()
        assert statuses(runner) == [True, True]  # one failure is not enough
        await runner.run_once()
        assert statuses(runner) == [False, True]
        await runner.run_once()
        assert statuses(runner) == [False, True]  # one success is not enough either
        await runner.run_once()
        assert statuses(runner) == [True, True]
    finally:
        await runner.stop()
    names = [(type(e).__name__, getattr(e, "address", None)) for e in events]
    assert names == [("HealthCheckFailed", "a"), ("HealthCheckRecovered", "a")]
    assert "probe returned False" in events[0].reason  # type: ignore[attr-defined]


async def test_errors_and_timeouts_are_unhealthy(clock: FakeClock) -> None:
    async def probe(backend: Backend) -> None:
        if backend.address == "a":
            raise OSError("refused")
        await asyncio.sleep(10)

    runner, events = checker(probe, clock, unhealthy_threshold=1, timeout=0.01)
    await runner.start()
    await runner.stop()
    reasons = {e.address: e.reason for e in events  # type: ignore[attr-defined]
               if type(e).__name__ == "HealthCheckFailed"}
    assert type(events[-1]).__name__ == "PanicModeEntered"
    assert reasons == {"a": "probe raised OSError('refused')",
                       "b": "probe timed out after 0.01 s"}


async def test_sync_probes_run_in_a_worker_thread(clock: FakeClock) -> None:
    threads: set[str] = set()

    def probe(backend: Backend) -> bool:
        threads.add(threading.current_thread().name)
        return True

    runner, _ = checker(probe, clock)
    await runner.start()
    await runner.stop()
    assert threads
    assert threading.current_thread().name not in threads


async def test_the_loop_probes_on_a_jittered_interval(clock: FakeClock) -> None:
    probe = Script(a=[True] * 50, b=[True] * 50)
    check = HealthCheck(probe, interval=10.0, jitter=0.5)
    service = Service("s", ["a", "b"], pipeline=ml.Pipeline(), clock=clock)
    runner = HealthChecker(service, check, clock, random.Random(4))
    await runner.start()
    await probe.tenth_call.wait()  # five rounds of two backends
    await runner.stop()
    gaps = clock.sleeps[:4]
    assert all(5.0 <= g <= 15.0 for g in gaps)
    assert len(set(gaps)) == 4  # jittered, not lock-step
    calls = probe.calls
    await asyncio.sleep(0)
    assert probe.calls == calls  # stopped


async def test_run_once_needs_a_started_checker(clock: FakeClock) -> None:
    runner, _ = checker(Script(), clock)
    with pytest.raises(RuntimeError, match="start"):
        await runner.run_once()


@pytest.mark.parametrize(("factory", "match"), [
    (lambda: HealthCheck(5), "HealthCheck: probe"),  # type: ignore[arg-type]
    (lambda: HealthCheck(print, interval=0), "HealthCheck: interval"),
    (lambda: HealthCheck(print, timeout=-1), "HealthCheck: timeout"),
    (lambda: HealthCheck(print, healthy_threshold=0), "HealthCheck: healthy_threshold"),
    (lambda: HealthCheck(print, unhealthy_threshold=0), "HealthCheck: unhealthy_threshold"),
    (lambda: HealthCheck(print, jitter=1.0), "HealthCheck: jitter"),
    (lambda: HttpHealthCheck("healthz"), "HttpHealthCheck: path"),
])
def test_bad_options(factory: Any, match: str) -> None:
    with pytest.raises(ml.ConfigError, match=match):
        factory()


def test_http_health_check_defaults() -> None:
    check = HttpHealthCheck()
    assert check.path == "/healthz"
    o = check.options
    assert (o.interval, o.timeout, o.healthy_threshold, o.unhealthy_threshold) == (5.0, 1.0, 1, 2)


async def test_the_first_probe_is_each_endpoints_prior_latency(clock: FakeClock) -> None:
    # A cold client's first wave of requests leaves before any answer: without a
    # prior, p2c_ewma spreads it evenly, a third of it to a 60x slower backend.
    latency = {"fast": 0.002, "slow": 0.12, "flaky": 0.002}

    async def probe(backend: Backend) -> None:
        clock.advance(latency[backend.address])

    service = Service("s", list(latency), pipeline=ml.Pipeline(), clock=clock,
                      health_check=HealthCheck(probe))
    (runner,) = service.components
    assert isinstance(runner, HealthChecker)
    await runner.open()
    await runner.run_once()
    assert {e.address: e.ewma for e in service.endpoints} == pytest.approx(latency, rel=0.02)
    balancer = ml.routing.P2CEwma(random=random.Random(3))
    call = ml.CallContext(print, (), {}, "op")
    sent = {e.address: 0 for e in service.endpoints}
    for _ in range(32):
        chosen = balancer.pick(service.endpoints, call)
        chosen.begin()
        sent[chosen.address] += 1
    assert sent["slow"] == 0, sent
    # Used once: attempts' latencies take over, and later probes leave them alone.
    fast = service.endpoints[0]
    start = fast.begin()
    clock.advance(0.01)
    fast.succeeded(start)
    latency["fast"] = 1.0  # a slow probe now would be a new peak
    await runner.run_once()
    assert fast.ewma == pytest.approx(0.01, rel=0.15)  # decayed a little, no new peak
    # The first answer replaces a prior, also a slower one (a probe's own first
    # request may have paid the probe client's set-up), rather than decaying from it.
    slow = service.endpoints[1]
    start = slow.begin()
    clock.advance(0.005)
    slow.succeeded(start)
    assert slow.ewma == pytest.approx(0.005)
    await runner.stop()


async def test_a_backend_removed_while_its_probe_runs_is_not_reported(clock: FakeClock) -> None:
    # The round applied its answers to the endpoints it began with: a backend removed
    # meanwhile (a pod replaced by discovery) was announced as failing its check, and
    # its health-check failure series came back after its removal had dropped it.
    started, answer = asyncio.Event(), asyncio.Event()

    async def probe(backend: Backend) -> bool:
        if backend.address == "a":
            started.set()
            await answer.wait()
        return backend.address != "a"

    runner, events = checker(probe, clock, unhealthy_threshold=1)
    await runner.open()
    try:
        round_ = asyncio.create_task(runner.run_once())
        await started.wait()
        runner.target.set_backends(["b", "c"])
        answer.set()
        await round_
    finally:
        await runner.stop()
    failed = [e for e in events if isinstance(e, ml.HealthCheckFailed)]
    assert failed == []
    assert [e.address for e in runner.target.endpoints] == ["b", "c"]
