"""FakeClock refuses a start or an advance that would leave it at a time no clock shows."""

from __future__ import annotations

import math

import pytest

import meshlite as ml
from meshlite.testing import FakeClock


@pytest.mark.parametrize("start", [math.nan, math.inf, -math.inf, "0", None, True])
def test_a_start_that_is_not_a_finite_number_is_refused(start: object) -> None:
    with pytest.raises(ml.ConfigError, match=r"^FakeClock: start must be a finite number, got "):
        FakeClock(start)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-1, math.nan, math.inf, "1", None])
def test_an_advance_that_is_not_a_finite_number_at_least_zero_is_refused(
    seconds: object,
) -> None:
    clock = FakeClock(5.0)
    with pytest.raises(ml.ConfigError, match=r"^FakeClock.advance: seconds must be "):
        clock.advance(seconds)  # type: ignore[arg-type]
    assert clock.monotonic() == 5.0   # nothing half-applied: the clock did not move
    clock.advance(2)
    assert clock.monotonic() == 7.0


def test_a_refused_advance_is_still_a_value_error() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        FakeClock().advance(-0.5)


def test_negative_and_integer_starts_are_times_like_any_other() -> None:
    assert FakeClock(-3).monotonic() == -3.0
    assert isinstance(FakeClock(2).monotonic(), float)
