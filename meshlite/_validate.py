"""Option checks shared by every policy: each failure is a ConfigError that names
the owner, the argument, the value received and what would be valid."""

from __future__ import annotations

import math
from typing import Any, NoReturn

from ._errors import ConfigError

__all__ = ["at_least", "fail", "fraction", "non_negative", "optional_positive", "positive"]


def fail(owner: str, field: str, value: object, valid: str) -> NoReturn:
    """Raise the ConfigError for ``owner``'s ``field``."""
    raise ConfigError(f"{owner}: {field} must be {valid}, got {value!r}", policy=owner)


def _number(owner: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        fail(owner, field, value, "a number")
    return float(value)


def positive(owner: str, field: str, value: Any) -> float:
    """``value`` as a float, which must be > 0 and finite."""
    v = _number(owner, field, value)
    if not 0 < v < math.inf:
        fail(owner, field, value, "> 0")
    return v


def optional_positive(owner: str, field: str, value: Any) -> float | None:
    """Like :func:`positive`, but ``None`` passes through."""
    return None if value is None else positive(owner, field, value)


def non_negative(owner: str, field: str, value: Any) -> float:
    """``value`` as a float, which must be >= 0 and finite."""
    v = _number(owner, field, value)
    if not 0 <= v < math.inf:
        fail(owner, field, value, ">= 0")
    return v


def at_least(owner: str, field: str, value: Any, minimum: int) -> int:
    """``value`` as an int, which must be >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(owner, field, value, f"an integer >= {minimum}")
    if value < minimum:
        fail(owner, field, value, f">= {minimum}")
    return value


def fraction(owner: str, field: str, value: Any) -> float:
    """``value`` as a float in (0, 1]."""
    v = _number(owner, field, value)
    if not 0 < v <= 1:
        fail(owner, field, value, "in (0, 1]")
    return v
