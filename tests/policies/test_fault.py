from __future__ import annotations

import math
import random
from typing import Any

import pytest

import meshlite as ml
from meshlite.policies._fault import FaultInjected
from meshlite.testing import FakeClock

N = 10_000


def ok(ctx: ml.CallContext) -> str:
    return "real"


async def aok(ctx: ml.CallContext) -> str:
    return "real"


def ctx() -> ml.CallContext:
    return ml.CallContext(print, (), {}, "op", service="users")


def count_faults(policy: ml.FaultInjection, calls: int = N) -> int:
    handler = policy.wrap(ok)
    faults = 0
    for _ in range(calls):
        try:
            handler(ctx())
        except ConnectionError:
            faults += 1
    return faults


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_fault_rate_within_binomial_bound(rate: float) -> None:
    faults = count_faults(ml.FaultInjection(rate, error=ConnectionError,
                                            random=random.Random(1234)))
    # Five standard deviations of Binomial(N, rate): fails by chance ~1 in 3.5 million.
    spread = 5 * math.sqrt(N * rate * (1 - rate))
    assert N * rate - spread <= faults <= N * rate + spread
    if rate in (0.0, 1.0):
        assert faults == N * rate


def test_seeded_random_is_reproducible() -> None:
    first = count_faults(ml.FaultInjection(0.5, random=random.Random(7)), 200)
    second = count_faults(ml.FaultInjection(0.5, random=random.Random(7)), 200)
    assert first == second


def test_disabled_returns_call_next_unchanged() -> None:
    assert ml.FaultInjection(1.0, enabled=False).wrap(ok) is ok
    assert ml.FaultInjection(1.0, enabled=False).awrap(aok) is aok
    assert ml.FaultInjection(0.0).wrap(ok) is ok
    assert ml.FaultInjection(1.0).wrap(ok) is not ok


def test_enabled_callable_checked_per_call() -> None:
    switch = [False]
    handler = ml.FaultInjection(1.0, enabled=lambda: switch[0]).wrap(ok)
    assert handler(ctx()) == "real"
    switch[0] = True
    with pytest.raises(ConnectionError):
        handler(ctx())
    switch[0] = False
    assert handler(ctx()) == "real"


def test_default_fault_is_connection_error_with_note() -> None:
    with pytest.raises(ConnectionError) as info:
        ml.FaultInjection(1.0).wrap(ok)(ctx())
    assert "injected by meshlite FaultInjection" in info.value.__notes__


def test_error_instance_is_copied_per_fault() -> None:
    template = ml.RateLimitedError("slow down", service="users", retry_after=2.0)
    handler = ml.FaultInjection(1.0, error=template).wrap(ok)
    raised: list[BaseException] = []
    for _ in range(3):
        with pytest.raises(ml.RateLimitedError) as info:
            handler(ctx())
        raised.append(info.value)
    assert all(e is not template for e in raised)
    assert raised[0] is not raised[1]
    assert all(str(e) == "slow down" and e.retry_after == 2.0 for e in raised)  # type: ignore[attr-defined]
    assert template.__traceback__ is None
    assert not hasattr(template, "__notes__")


def test_error_instance_that_cannot_be_copied_is_reused() -> None:
    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}+{b}")

    template = Odd(1, 2)
    with pytest.raises(Odd) as info:
        ml.FaultInjection(1.0, error=template).wrap(ok)(ctx())
    assert info.value is template


def test_error_factory() -> None:
    made: list[int] = []

    def factory() -> BaseException:
        made.append(1)
        return TimeoutError(f"fault {len(made)}")

    handler = ml.FaultInjection(1.0, error=factory).wrap(ok)
    with pytest.raises(TimeoutError, match="fault 1"):
        handler(ctx())
    bad = ml.FaultInjection(1.0, error=lambda: "oops").wrap(ok)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return an exception"):
        bad(ctx())


def test_result_answers_without_calling() -> None:
    called: list[int] = []

    def real(ctx: ml.CallContext) -> str:
        called.append(1)
        return "real"

    assert ml.FaultInjection(1.0, result="canned").wrap(real)(ctx()) == "canned"
    assert called == []


def test_latency_only_delays_then_calls(clock: FakeClock) -> None:
    handler = ml.FaultInjection(1.0, latency=0.25, clock=clock).wrap(ok)
    assert handler(ctx()) == "real"
    assert clock.sleeps == [0.25]
    assert clock.monotonic() == 0.25


def test_latency_callable_and_error(clock: FakeClock) -> None:
    rng = random.Random(3)
    handler = ml.FaultInjection(1.0, error=ConnectionError, latency=lambda: rng.uniform(1, 2),
                                clock=clock).wrap(ok)
    with pytest.raises(ConnectionError):
        handler(ctx())
    assert 1.0 <= clock.sleeps[0] <= 2.0
    assert clock.monotonic() == clock.sleeps[0]


@pytest.mark.parametrize("drawn", [math.inf, math.nan, "0.1", True, None])
async def test_a_latency_function_returning_no_finite_number_is_a_config_error(
        clock: FakeClock, drawn: Any) -> None:
    # A plain latency is checked when the policy is made; a function's draw when it
    # is made, and named as such: an infinite one slept forever on a fake clock, and
    # failed with OSError (EINVAL) or a bare ValueError on the system's.
    policy = ml.FaultInjection(1.0, latency=lambda: drawn, clock=clock)
    with pytest.raises(ml.ConfigError, match="latency must be a function returning a finite"):
        policy.wrap(ok)(ctx())
    with pytest.raises(ml.ConfigError, match="latency must be a function returning a finite"):
        await policy.awrap(aok)(ctx())
    assert clock.sleeps == []


def test_a_negative_latency_draw_waits_nothing(clock: FakeClock) -> None:
    handler = ml.FaultInjection(1.0, latency=lambda: -0.5, clock=clock).wrap(ok)
    assert handler(ctx()) == "real"
    assert clock.monotonic() == 0.0


async def test_async_latency_and_result(clock: FakeClock) -> None:
    handler = ml.FaultInjection(1.0, latency=0.5, result=42, clock=clock).awrap(aok)
    assert await handler(ctx()) == 42
    assert clock.monotonic() == 0.5


async def test_async_latency_only_then_calls(clock: FakeClock) -> None:
    @ml.FaultInjection(1.0, latency=0.5, clock=clock)
    async def real() -> str:
        return "real"

    assert await real() == "real"
    assert clock.sleeps == [0.5]


async def test_async_error_and_no_fault_path() -> None:
    switch = [True]

    @ml.FaultInjection(1.0, error=ValueError("bad"), enabled=lambda: switch[0])
    async def real() -> str:
        return "real"

    with pytest.raises(ValueError, match="bad"):
        await real()
    switch[0] = False
    assert await real() == "real"


def test_base_exception_may_be_injected() -> None:
    with pytest.raises(KeyboardInterrupt):
        ml.FaultInjection(1.0, error=KeyboardInterrupt).wrap(ok)(ctx())


def test_event_emitted(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    policy = ml.FaultInjection(1.0, latency=0.1, error=ConnectionError, clock=clock)
    policy.add_hook(events.append)
    with pytest.raises(ConnectionError):
        policy.wrap(ok)(ctx())
    (event,) = events
    assert isinstance(event, FaultInjected)
    assert (event.fault, event.latency, event.service) == ("error", 0.1, "users")
    assert isinstance(event.error, ConnectionError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"rate": -0.1}, "rate"), ({"rate": 1.5}, "rate"), ({"rate": "0.5"}, "rate"),
     ({"rate": True}, "rate"), ({"rate": 0.5, "error": 5}, "error"),
     ({"rate": 0.5, "error": dict}, "error"),
     ({"rate": 0.5, "error": ValueError, "result": 1}, "result"),
     ({"rate": 0.5, "latency": -1.0}, "latency"), ({"rate": 0.5, "latency": "1"}, "latency"),
     ({"rate": 0.5, "enabled": "yes"}, "enabled"),
     ({"rate": 0.5, "random": 7}, "random")],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"FaultInjection: {field} must be"):
        ml.FaultInjection(**kwargs)


def test_repr() -> None:
    assert repr(ml.FaultInjection(0.5, latency=1.0, result=None)) == (
        "FaultInjection(rate=0.5, latency=1.0, result=None)")
