"""Every policy that takes a clock or a random source refuses anything else when it
is built, with a ConfigError naming the argument (not an AttributeError at the
first call)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import meshlite as ml

BUILDERS: dict[str, Callable[..., Any]] = {
    "Timeout": lambda **kw: ml.Timeout(1.0, **kw),
    "RateLimit": lambda **kw: ml.RateLimit(10, **kw),
    "Hedge": lambda **kw: ml.Hedge(0.1, **kw),
    "CircuitBreaker": lambda **kw: ml.CircuitBreaker(**kw),
    "FaultInjection": lambda **kw: ml.FaultInjection(0.1, **kw),
    "AdaptiveConcurrency": lambda **kw: ml.AdaptiveConcurrency(**kw),
    "Metrics": lambda **kw: ml.Metrics(**kw),
    "Retry": lambda **kw: ml.Retry(**kw),
    "Bulkhead": lambda **kw: ml.Bulkhead(4, **kw),
    "Cache": lambda **kw: ml.Cache(1.0, **kw),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_clock_that_is_not_one_is_a_config_error(name: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"{name}: clock must be"):
        BUILDERS[name](clock=time.monotonic)  # a function, not a clock
    assert BUILDERS[name](clock=ml.testing.FakeClock()) is not None


@pytest.mark.parametrize("name", ["FaultInjection", "AdaptiveConcurrency", "Retry"])
def test_a_random_source_that_is_not_one_is_a_config_error(name: str) -> None:
    with pytest.raises(ml.ConfigError, match=rf"{name}: random must be a random\.Random"):
        BUILDERS[name](random=42)
