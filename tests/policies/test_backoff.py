from __future__ import annotations

import email.utils
import random
from typing import Any

import pytest
import tenacity
from _tenacity import wait_exception
from hypothesis import given
from hypothesis import strategies as st

import meshlite as ml
from meshlite._backoff import TenacityBackoff, as_backoff, parse_retry_after, retry_after_of


def delays(backoff: ml.backoff.Backoff, count: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    out: list[float] = []
    previous = 0.0
    for attempt in range(1, count + 1):
        previous = backoff(attempt, previous, rng)
        out.append(previous)
    return out


def test_exponential_without_jitter_doubles_up_to_maximum() -> None:
    backoff = ml.backoff.exponential(initial=0.1, maximum=1.0, jitter=False)
    assert delays(backoff, 6) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_exponential_full_jitter_uses_the_seeded_random() -> None:
    backoff = ml.backoff.exponential(initial=0.1, maximum=1.0)
    rng = random.Random(7)
    expected = [c * rng.random() for c in (0.1, 0.2, 0.4, 0.8, 1.0)]
    assert delays(backoff, 5, seed=7) == pytest.approx(expected)


@given(attempt=st.integers(1, 10_000), seed=st.integers(0, 2**32))
def test_full_jitter_stays_within_zero_and_the_ceiling(attempt: int, seed: int) -> None:
    backoff = ml.backoff.exponential(initial=0.05, maximum=2.0, multiplier=3.0)
    ceiling = 2.0 if attempt > 10 else min(2.0, 0.05 * 3.0 ** (attempt - 1))
    assert 0.0 <= backoff(attempt, 0.0, random.Random(seed)) <= ceiling


def test_exponential_huge_attempt_does_not_overflow() -> None:
    backoff = ml.backoff.exponential(initial=1e-3, maximum=5.0, jitter=False)
    assert backoff(10**9, 0.0, random.Random()) == 5.0


def test_exponential_multiplier_one_is_constant() -> None:
    backoff = ml.backoff.exponential(initial=0.3, maximum=1.0, multiplier=1.0, jitter=False)
    assert delays(backoff, 4) == [0.3, 0.3, 0.3, 0.3]


def test_constant() -> None:
    assert delays(ml.backoff.constant(0.25), 3) == [0.25, 0.25, 0.25]


@given(seed=st.integers(0, 2**32))
def test_decorrelated_jitter_bounds(seed: int) -> None:
    backoff = ml.backoff.decorrelated(initial=0.1, maximum=3.0)
    sequence = delays(backoff, 30, seed)
    previous = 0.1
    for delay in sequence:
        assert 0.1 <= delay <= min(3.0, 3 * previous)
        previous = delay


def test_decorrelated_grows_from_initial() -> None:
    backoff = ml.backoff.decorrelated(initial=0.1, maximum=100.0)
    assert max(delays(backoff, 40)) > 1.0  # it wanders well above initial


def test_strategies_are_immutable_and_comparable() -> None:
    backoff = ml.backoff.exponential(initial=0.1, maximum=1.0)
    with pytest.raises(AttributeError):
        backoff.initial = 1.0  # type: ignore[misc]
    assert backoff == ml.backoff.exponential(initial=0.1, maximum=1.0)
    assert "ExponentialBackoff(initial=0.1" in repr(backoff)


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        (tenacity.wait_exponential(multiplier=1, max=10), [1.0, 2.0, 4.0, 8.0, 10.0]),
        (tenacity.wait_fixed(0.5), [0.5] * 5),
        (tenacity.wait_incrementing(start=1, increment=2), [1.0, 3.0, 5.0, 7.0, 9.0]),
        (tenacity.wait_fixed(1) + tenacity.wait_fixed(2), [3.0] * 5),
    ],
)
def test_tenacity_wait_adapted_with_attempt_number(wait: Any, expected: list[float]) -> None:
    backoff = as_backoff(wait)
    assert isinstance(backoff, TenacityBackoff)
    assert delays(backoff, 5) == expected


def test_tenacity_wait_exception_sees_the_error() -> None:
    backoff = as_backoff(wait_exception(lambda e: 7.0 if isinstance(e, KeyError) else 1))
    assert isinstance(backoff, TenacityBackoff)
    assert backoff.delay_for(1, KeyError("k"), None) == 7.0
    assert backoff.delay_for(1, ValueError(), None) == 1.0


def test_user_subclass_of_tenacity_wait_is_adapted() -> None:
    class Mine(tenacity.wait.wait_base):
        def __call__(self, retry_state: tenacity.RetryCallState) -> float:
            return retry_state.attempt_number * 10.0

    assert delays(as_backoff(Mine()), 2) == [10.0, 20.0]


def test_plain_callable_accepted_as_is() -> None:
    def mine(attempt: int, previous: float, rng: random.Random) -> float:
        return attempt / 10

    assert as_backoff(mine) is mine


def test_huge_maximum_is_accepted_and_capped() -> None:
    backoff = ml.backoff.exponential(initial=0.05, maximum=1e308, jitter=False)
    assert delays(backoff, 3) == [0.05, 0.1, 0.2]
    assert backoff(5000, 0.0, random.Random(1)) == 1e308  # capped, never an overflow


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ml.backoff.exponential(initial=0), "initial"),
        (lambda: ml.backoff.exponential(initial=-1.0), "initial"),
        (lambda: ml.backoff.exponential(initial="1"), "initial"),  # type: ignore[arg-type]
        (lambda: ml.backoff.exponential(initial=1.0, maximum=0.5), "maximum"),
        (lambda: ml.backoff.exponential(maximum=float("inf")), "maximum"),
        (lambda: ml.backoff.exponential(multiplier=0.5), "multiplier"),
        (lambda: ml.backoff.exponential(jitter="yes"), "jitter"),  # type: ignore[arg-type]
        (lambda: ml.backoff.constant(-0.1), "delay"),
        (lambda: ml.backoff.constant(float("nan")), "delay"),
        (lambda: ml.backoff.decorrelated(initial=0), "initial"),
        (lambda: ml.backoff.decorrelated(initial=1.0, maximum=0.1), "maximum"),
    ],
)
def test_bad_strategy_arguments(make: Any, field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"backoff.[a-z]+: {field} must be"):
        make()


@pytest.mark.parametrize(
    "value", [0.1, 3, True, "fast", None, tenacity.wait_fixed, lambda attempt: 0.0, object()]
)
def test_bad_backoff_objects(value: object) -> None:
    with pytest.raises(ml.ConfigError, match="Retry: backoff must be a backoff strategy"):
        as_backoff(value)


# -- Retry-After ---------------------------------------------------------------------


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 120, usegmt=True)
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after(date, now=lambda: now) == 120.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), lambda: now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("-5") == 0.0


def test_an_http_date_is_counted_on_the_servers_clock() -> None:
    server = 1_700_000_000.0  # the server's clock when it answered (its Date header)
    date, until = (email.utils.formatdate(t, usegmt=True) for t in (server, server + 120))
    for host in (server - 3600, server, server + 3600):  # this host's clock, skewed or not
        assert parse_retry_after(until, now=lambda host=host: host, date=date) == 120.0
    # Without a valid Date, the only clock left is this host's.
    assert parse_retry_after(until, now=lambda: server + 3600, date="yesterday") == 0.0
    assert parse_retry_after(until, now=lambda: server - 60, date=None) == 180.0
    assert retry_after_of(Response({"Retry-After": until, "Date": date})) == 120.0
    assert retry_after_of(Response({"retry-after": until.encode(), "date": date.encode()})) == 120.0


class Response:
    def __init__(self, headers: dict[str, Any]) -> None:
        self.headers = headers


class WithResponse(Exception):
    def __init__(self, headers: dict[str, Any]) -> None:
        super().__init__()
        self.response = Response(headers)


def test_retry_after_of_reads_every_carrier() -> None:
    assert retry_after_of(ml.RateLimitedError("slow", retry_after=2.5)) == 2.5
    assert retry_after_of(ml.RateLimitedError("slow")) is None
    assert retry_after_of(Response({"Retry-After": "4"})) == 4.0
    assert retry_after_of(Response({"retry-after": b"5"})) == 5.0
    assert retry_after_of(WithResponse({"Retry-After": "6"})) == 6.0
    assert retry_after_of(WithResponse({})) is None
    assert retry_after_of(ConnectionError()) is None
    assert retry_after_of(None) is None


def test_retry_after_of_survives_raising_properties() -> None:
    class Broken(Exception):
        @property
        def response(self) -> Any:
            raise RuntimeError("no response attached")

    assert retry_after_of(Broken()) is None
