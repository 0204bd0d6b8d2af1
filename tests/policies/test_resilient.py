"""ml.resilient refuses bad options with a ConfigError naming the option and what is valid."""

from __future__ import annotations

from typing import Any

import pytest

import meshlite as ml


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"breaker": {"treshold": 0.5}},
         r"^resilient: breaker has unknown option\(s\) 'treshold'; valid CircuitBreaker "
         r"options: failure_rate, window, .*open_seconds"),
        ({"retry": 3}, r"^resilient: unknown option\(s\) 'retry'; valid: timeout, retries, "),
        ({"per": 0}, r"^resilient: per must be > 0, got 0$"),
        ({"rate": 10.0, "per": -1.0}, r"^resilient: per must be > 0, got -1.0$"),
        ({"cache_maxsize": 0}, r"^resilient: cache_maxsize must be >= 1, got 0$"),
        ({"trace": "no"}, r"^resilient: trace must be True or False, got 'no'$"),
    ],
)
def test_bad_options_raise_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ml.ConfigError, match=message):
        ml.resilient(**options)


def test_a_dict_of_breaker_options_still_builds_that_breaker() -> None:
    fn = ml.resilient(breaker={"open_seconds": 5.0, "name": "users"})(lambda: 1)
    breaker = next(p for p in fn.pipeline.policies if isinstance(p, ml.CircuitBreaker))
    assert breaker.options.open_seconds == 5.0
    assert breaker.name == "users"
    assert fn() == 1
