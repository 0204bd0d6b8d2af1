"""Turning the ``on=`` arguments of policies into predicates, checked once at build time.

tenacity's ``retry_*`` strategies (``retry_if_exception_type(IOError)``,
``retry_if_result(...)``, their ``|`` and ``&``) are accepted too: they read a
``RetryCallState``, so :func:`tenacity_test` builds one with the outcome set.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeAlias

from ._backoff import from_tenacity, tenacity_state
from ._validate import fail, not_coroutine

__all__ = ["ErrorFilter", "error_predicate", "is_tenacity_retry", "tenacity_test"]

ErrorFilter: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
"""What ``on=`` accepts: an exception type, a tuple of them, or ``fn(error) -> bool``."""


def _is_exception_type(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def is_tenacity_retry(value: object) -> bool:
    """Whether ``value`` is one of tenacity's ``retry_*`` strategies (tenacity is
    imported only when ``value`` comes from it)."""
    if not from_tenacity(value):
        return False
    import tenacity

    return isinstance(value, tenacity.retry_base)


def tenacity_test(strategy: Any, *, result: bool) -> Callable[[Any], bool]:
    """A tenacity ``retry_*`` strategy as ``fn(error) -> bool`` (or, with ``result``,
    ``fn(result) -> bool``): the strategy sees a ``RetryCallState`` whose outcome is
    that error (or result), as tenacity would show it after the attempt."""
    import tenacity

    retrying = tenacity.Retrying()

    if result:
        def test_result(value: Any) -> bool:
            return bool(strategy(tenacity_state(retrying, 1, None, value)))

        return test_result

    def test_error(error: BaseException) -> bool:
        return bool(strategy(tenacity_state(retrying, 1, error, None)))

    return test_error


def error_predicate(owner: str, field: str, on: ErrorFilter) -> Callable[[BaseException], bool]:
    """Return ``fn(error) -> bool`` for ``on``; raise ConfigError when ``on`` is neither
    an exception type, a tuple of exception types, a callable, nor a tenacity
    ``retry_*`` strategy."""
    if is_tenacity_retry(on):
        on = tenacity_test(on, result=False)
    if _is_exception_type(on):
        exc_type: type[BaseException] = on  # type: ignore[assignment]
        return lambda error: isinstance(error, exc_type)
    if isinstance(on, tuple):
        if not on or not all(_is_exception_type(t) for t in on):
            fail(owner, field, on, "an exception type, a non-empty tuple of them, or a callable")
        types = on
        return lambda error: isinstance(error, types)
    if not callable(on) or inspect.isclass(on):
        fail(owner, field, on, "an exception type, a tuple of exception types, or a callable")
    not_coroutine(owner, field, on)
    predicate: Callable[[BaseException], bool] = on

    def matches(error: BaseException) -> bool:
        try:
            return predicate(error)
        except Exception as raised:  # a bug of the predicate's: say whose, and on what
            raised.add_note(f"raised by the {field}= predicate of {owner}, given "
                            f"{type(error).__name__}: {error}")
            raise

    return matches
