"""Turning the ``on=`` arguments of policies into predicates, checked once at build time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeAlias

from ._validate import fail, not_coroutine

__all__ = ["ErrorFilter", "error_predicate"]

ErrorFilter: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
"""What ``on=`` accepts: an exception type, a tuple of them, or ``fn(error) -> bool``."""


def _is_exception_type(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def error_predicate(owner: str, field: str, on: ErrorFilter) -> Callable[[BaseException], bool]:
    """Return ``fn(error) -> bool`` for ``on``; raise ConfigError when ``on`` is neither
    an exception type, a tuple of exception types, nor a callable."""
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
