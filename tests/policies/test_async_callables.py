"""Options called inline on every call must be sync functions.

A coroutine function's result is a coroutine object, which is always true and never
equal to another: as a predicate it would match every error or result, as a key it
would give every call a key of its own. Each is refused when the policy is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import meshlite as ml


async def async_predicate(value: object) -> bool:
    return isinstance(value, ConnectionError)


async def async_key(*args: object, **kwargs: object) -> object:
    return args


BUILDERS: list[tuple[str, str, Callable[[], Any]]] = [
    ("Retry", "on", lambda: ml.Retry(on=async_predicate)),
    ("Retry", "on_result", lambda: ml.Retry(on_result=async_predicate)),
    ("CircuitBreaker", "failure_on", lambda: ml.CircuitBreaker(failure_on=async_predicate)),
    ("Hedge", "on", lambda: ml.Hedge(0.1, on=async_predicate)),
    ("Fallback", "on", lambda: ml.Fallback(None, on=async_predicate)),
    ("Cache", "key", lambda: ml.Cache(ttl=1.0, key=async_key)),
    ("RateLimit", "key", lambda: ml.RateLimit(rate=1.0, key=async_key)),
    ("FaultInjection", "enabled", lambda: ml.FaultInjection(rate=1.0, enabled=async_key)),
    ("FaultInjection", "error", lambda: ml.FaultInjection(rate=1.0, error=async_key)),
    ("FaultInjection", "latency", lambda: ml.FaultInjection(rate=1.0, latency=async_key)),
]


@pytest.mark.parametrize(("owner", "argument", "build"), BUILDERS,
                         ids=[f"{o}.{a}" for o, a, _ in BUILDERS])
def test_a_coroutine_function_is_refused_naming_the_argument(
    owner: str, argument: str, build: Callable[[], Any],
) -> None:
    with pytest.raises(ml.ConfigError, match=rf"^{owner}: {argument} must be .*not a coroutine"):
        build()


class _AsyncPredicate:
    async def __call__(self, value: object) -> bool:
        return isinstance(value, ConnectionError)


def test_an_object_with_an_async_call_is_refused_as_a_coroutine_function_is() -> None:
    # inspect.iscoroutinefunction says False for it: it was taken, and matched
    # every error (a coroutine object is true).
    with pytest.raises(ml.ConfigError, match=r"^Retry: on must be .*not a coroutine"):
        ml.Retry(on=_AsyncPredicate())
    with pytest.raises(ml.ConfigError, match=r"^CircuitBreaker: failure_on must be"):
        ml.CircuitBreaker(failure_on=_AsyncPredicate())
