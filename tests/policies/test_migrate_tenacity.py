"""A service moved from tenacity's ``@retry(...)`` to ``ml.Retry``, against a real
loopback backend: the same delays for every wait strategy, and tenacity's ``retry_*``
strategies taken as ``on=`` / ``on_result=`` as they were given to ``retry=``."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import tenacity
from tenacity import (
    wait_chain,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_incrementing,
    wait_random,
    wait_random_exponential,
)

import meshlite as ml
from meshlite.testing import FakeBackend, FakeClock

WAITS: dict[str, Callable[[], Any]] = {
    "exponential(multiplier, min, max)": lambda: wait_exponential(multiplier=0.5, min=1, max=10),
    "exponential(exp_base=3)": lambda: wait_exponential(exp_base=3, max=100),
    "random_exponential": lambda: wait_random_exponential(multiplier=1, min=0.5, max=60),
    "exponential_jitter": lambda: wait_exponential_jitter(initial=1, max=10, jitter=1),
    "chain": lambda: wait_chain(*[wait_fixed(1)] * 2 + [wait_fixed(3)] * 2 + [wait_fixed(5)]),
    "fixed + exponential": lambda: wait_fixed(1) + wait_exponential(max=4),
    "fixed + random": lambda: wait_fixed(1) + wait_random(0, 1),
    "incrementing": lambda: wait_incrementing(start=1, increment=2, max=7),
}


def _failing() -> None:
    raise ConnectionError("down")


@pytest.mark.parametrize("name", list(WAITS))
def test_every_wait_strategy_sleeps_what_tenacity_sleeps(name: str) -> None:
    slept: list[float] = []
    before = tenacity.retry(wait=WAITS[name](), stop=tenacity.stop_after_attempt(6),
                            sleep=slept.append, reraise=True)(_failing)
    random.seed(7)  # (tenacity's random strategies draw from the global generator)
    with pytest.raises(ConnectionError):
        before()
    clock = FakeClock()
    after = ml.Retry(attempts=6, backoff=WAITS[name](), clock=clock, budget=None)(_failing)
    random.seed(7)
    with pytest.raises(ConnectionError):
        after()
    assert clock.sleeps == slept


def test_retry_if_exception_type_as_on_retries_the_http_errors_it_names() -> None:
    clock = FakeClock()
    with FakeBackend(error_rate=1.0) as backend, httpx.Client(base_url=backend.url) as client:

        @ml.Retry(attempts=3, on=tenacity.retry_if_exception_type(httpx.HTTPStatusError),
                  backoff=wait_fixed(0.5), clock=clock)
        def get_user(uid: int) -> Any:
            return client.get(f"/users/{uid}").raise_for_status().json()

        with pytest.raises(httpx.HTTPStatusError) as raised:  # the service's own error
            get_user(1)
        assert len(backend.requests) == 3
        assert clock.sleeps == [0.5, 0.5]
        assert "3 attempts failed" in raised.value.__notes__[-1]

        @ml.Retry(attempts=3, on=tenacity.retry_if_exception_type(ConnectionError),
                  clock=clock)
        def get_order(oid: int) -> Any:
            return client.get(f"/orders/{oid}").raise_for_status().json()

        with pytest.raises(httpx.HTTPStatusError):  # not named: not retried
            get_order(1)
        assert len(backend.requests) == 4


def test_retry_if_result_as_on_result_retries_the_responses_it_refuses() -> None:
    clock = FakeClock()
    with FakeBackend(error_rate=1.0) as backend, httpx.Client(base_url=backend.url) as client:
        refuse = tenacity.retry_if_result(lambda r: r.status_code >= 500)

        @ml.Retry(attempts=3, on_result=refuse, backoff=wait_fixed(0.25), clock=clock)
        def get_user(uid: int) -> httpx.Response:
            return client.get(f"/users/{uid}")

        assert get_user(1).status_code == 503  # the last answer, returned as before
        assert len(backend.requests) == 3
        backend.set(error_rate=0.0)
        assert get_user(2).status_code == 200
        assert len(backend.requests) == 4


def test_a_combined_strategy_serves_on_and_on_result_alike() -> None:
    strategy = (tenacity.retry_if_exception_type(ConnectionError)
                | tenacity.retry_if_result(lambda r: r is None))
    answers: list[Any] = [ConnectionError("reset"), None, "ok"]

    def call() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    retry = ml.Retry(attempts=3, on=strategy, on_result=strategy, clock=FakeClock())
    assert retry(call)() == "ok"
    assert answers == []


def test_a_tenacity_stop_given_as_attempts_says_what_to_use() -> None:
    with pytest.raises(ml.ConfigError, match=r"stop_after_attempt\(n\) is attempts=n"):
        ml.Retry(attempts=tenacity.stop_after_attempt(3))  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match=r"ml\.Timeout\(s\) outside the Retry"):
        ml.Retry(attempts=tenacity.stop_after_delay(5))  # type: ignore[arg-type]


def test_a_tenacity_wait_function_is_refused_with_its_wrapping() -> None:
    def wait_for(retry_state: Any) -> float:
        return 0.1 * float(retry_state.attempt_number)

    with pytest.raises(ml.ConfigError, match=r"tenacity\.wait_combine\(fn\)"):
        ml.Retry(backoff=wait_for)  # type: ignore[arg-type]
    clock = FakeClock()
    with pytest.raises(ConnectionError):
        ml.Retry(attempts=3, backoff=tenacity.wait_combine(wait_for), clock=clock)(_failing)()
    assert clock.sleeps == [0.1, 0.2]
