"""ScriptedService: scripted and random outcomes, latency on the fake clock, the call log."""

from __future__ import annotations

import asyncio

import pytest

import meshlite as ml
from meshlite.testing import FakeClock, ScriptedCall, ScriptedService, ScriptExhausted, step

# -- script mode ---------------------------------------------------------------------------


def test_script_outcomes_in_order(clock: FakeClock) -> None:
    boom = ValueError("bad input")
    svc = ScriptedService(["a", boom, KeyError, step(result="d", latency=2.0)], clock=clock)
    assert svc(1) == "a"
    with pytest.raises(ValueError, match="bad input") as raised:
        svc(2)
    assert raised.value is boom  # an instance is raised as is
    with pytest.raises(KeyError):
        svc(3)
    assert svc(4) == "d"
    assert clock.monotonic() == 2.0
    assert clock.sleeps == [2.0]
    assert svc.remaining == 0


def test_exhausted_script_raises_a_clear_error() -> None:
    svc = ScriptedService(["only"], name="users")
    svc()
    with pytest.raises(ScriptExhausted, match=r"'users': call #2 but the script has 1 step"):
        svc()
    assert isinstance(svc.calls[-1].error, ScriptExhausted)
    assert issubclass(ScriptExhausted, ml.MeshliteError)


def test_exhausted_repeat_serves_the_last_step_forever() -> None:
    svc = ScriptedService([ConnectionError, "up"], exhausted="repeat")
    with pytest.raises(ConnectionError):
        svc()
    assert [svc(), svc(), svc()] == ["up", "up", "up"]


def test_error_classes_needing_a_message_are_built_with_one() -> None:
    svc = ScriptedService([ml.CircuitOpenError], name="billing")
    with pytest.raises(ml.CircuitOpenError, match="scripted failure of 'billing'"):
        svc()


def test_a_step_can_return_an_exception_class_as_a_value() -> None:
    assert ScriptedService([step(result=KeyError)])() is KeyError


def test_reset_rewinds_the_script() -> None:
    svc = ScriptedService([1, 2])
    assert [svc(), svc()] == [1, 2]
    svc.reset()
    assert svc.calls == []
    assert svc() == 1


# -- the call log --------------------------------------------------------------------------


def test_call_log_records_args_time_outcome_and_latency(clock: FakeClock) -> None:
    svc = ScriptedService([step(result="ok", latency=0.5), RuntimeError("x")], clock=clock)
    svc(1, key="a")
    with pytest.raises(RuntimeError):
        svc(2)
    first, second = svc.calls
    assert first == ScriptedCall((1,), {"key": "a"}, 0.0, "ok", None, 0.5)
    assert first.ok
    assert not second.ok
    assert (second.args, second.time, type(second.error)) == ((2,), 0.5, RuntimeError)
    assert svc.call_count == 2


# -- async -----------------------------------------------------------------------------------


async def test_async_calls_sleep_on_the_fake_clock(clock: FakeClock) -> None:
    svc = ScriptedService([step(result="slow", latency=3.0), step(result="fast", latency=1.0)],
                          clock=clock)
    finished: list[str] = []

    async def call() -> None:
        finished.append(await svc.acall())

    await asyncio.gather(call(), call())
    assert finished == ["fast", "slow"]  # concurrent sleepers wake in clock order
    assert clock.monotonic() == 3.0


async def test_async_errors_are_raised(clock: FakeClock) -> None:
    svc = ScriptedService([TimeoutError], clock=clock)
    with pytest.raises(TimeoutError):
        await svc.acall("x")
    assert svc.calls[0].args == ("x",)


async def test_cancellation_during_latency_propagates_and_is_logged() -> None:
    svc = ScriptedService([step(result=1, latency=30.0)])  # the real clock: it must not wait
    task = asyncio.create_task(svc.acall())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(svc.calls[0].error, asyncio.CancelledError)


async def test_works_under_a_pipeline_with_retry(clock: FakeClock) -> None:
    svc = ScriptedService([ConnectionError, ConnectionError, "ok"], clock=clock)
    pipeline = ml.Pipeline(ml.Retry(attempts=3, backoff=ml.backoff.constant(1.0), clock=clock,
                                    budget=None))
    assert await pipeline.acall(svc.acall, 7) == "ok"
    assert [c.args for c in svc.calls] == [(7,), (7,), (7,)]


# -- random modes --------------------------------------------------------------------------


def test_error_rate_is_seeded_and_repeatable() -> None:
    def outcomes(seed: int) -> list[bool]:
        svc = ScriptedService(error_rate=0.5, result="ok", seed=seed)
        results = []
        for _ in range(30):
            try:
                results.append(svc() == "ok")
            except ConnectionError:  # the default error
                results.append(False)
        return results

    first = outcomes(11)
    assert first == outcomes(11)
    assert True in first
    assert False in first


def test_error_rate_extremes_and_custom_error() -> None:
    always = ScriptedService(error_rate=1.0, error=ml.TimeoutExceeded("slow"))
    never = ScriptedService(error_rate=0.0, result=5)
    for _ in range(10):
        with pytest.raises(ml.TimeoutExceeded):
            always()
        assert never() == 5


def test_weighted_outcomes() -> None:
    svc = ScriptedService(outcomes=[("a", 3.0), (KeyError, 1.0), ("never", 0.0)], seed=1)
    seen = set()
    for _ in range(100):
        try:
            seen.add(svc())
        except KeyError:
            seen.add("KeyError")
    assert seen == {"a", "KeyError"}


def test_default_mode_returns_result_with_service_latency(clock: FakeClock) -> None:
    draws = iter([0.1, 0.2])
    svc = ScriptedService(result={"id": 1}, latency=lambda: next(draws), clock=clock)
    assert svc() == {"id": 1}
    assert svc() == {"id": 1}
    assert clock.sleeps == [0.1, 0.2]
    assert svc.remaining is None


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"script": [1], "error_rate": 0.5}, "give at most one of script=, outcomes= or "
                                             "error_rate=; script= and error_rate= were given"),
        ({"exhausted": "loop"}, "exhausted"),
        ({"error": 42}, "error"),
        ({"latency": -1.0}, "latency"),
        ({"error_rate": 2.0}, "error_rate"),
        ({"outcomes": [("a",)]}, "outcomes"),
        ({"outcomes": [("a", 0.0)]}, "outcomes"),
        ({"script": [], "exhausted": "repeat"}, "script"),
        ({"script": 5}, "script"),
        ({"script": "ok"}, "script"),       # a string is not a list of steps
        ({"clock": 3.0}, "clock"),
        ({"name": 7}, "name"),
        ({"name": ""}, "name"),
        ({"random": 42}, "random"),
    ],
)
def test_bad_options_are_config_errors_naming_them(kwargs: dict[str, object],
                                                   named: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"ScriptedService: {named}"):
        ScriptedService(**kwargs)  # type: ignore[arg-type]


def test_bad_step_is_a_config_error() -> None:
    with pytest.raises(ml.ConfigError, match="step: error"):
        step(error="nope")  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match="step: latency"):
        step(latency=-1)


def test_a_step_with_both_a_result_and_an_error_is_refused() -> None:
    # It can only do one of them: the result was silently ignored.
    with pytest.raises(ml.ConfigError, match=r"^step: error/result must be at most one"):
        step({"id": 1}, error=ConnectionError)
