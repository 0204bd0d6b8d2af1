"""Every policy that takes ``clock=`` refuses a value that is not a clock when built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import meshlite as ml
from meshlite.testing import FakeClock

BUILDERS: dict[str, Callable[..., Any]] = {
    "Timeout": lambda **kw: ml.Timeout(1.0, **kw),
    "Retry": lambda **kw: ml.Retry(attempts=2, **kw),
    "CircuitBreaker": lambda **kw: ml.CircuitBreaker(**kw),
    "RateLimit": lambda **kw: ml.RateLimit(rate=1.0, **kw),
    "Bulkhead": lambda **kw: ml.Bulkhead(max_concurrent=1, **kw),
    "Cache": lambda **kw: ml.Cache(ttl=1.0, **kw),
    "Hedge": lambda **kw: ml.Hedge(0.1, **kw),
    "FaultInjection": lambda **kw: ml.FaultInjection(rate=1.0, **kw),
    "AdaptiveConcurrency": lambda **kw: ml.AdaptiveConcurrency(**kw),
    "RetryBudget": lambda **kw: ml.RetryBudget(**kw),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("bad", [object(), 2.0, "system"])
def test_a_bad_clock_is_refused_naming_the_argument(name: str, bad: object) -> None:
    with pytest.raises(ml.ConfigError, match=rf"^{name}: clock must be .*, got "):
        BUILDERS[name](clock=bad)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_fake_clock_and_none_are_accepted(name: str) -> None:
    BUILDERS[name](clock=FakeClock())
    BUILDERS[name](clock=None)
