"""Option checks shared by every policy: each failure is a ConfigError that names
the owner, the argument, the value received and what would be valid."""

from __future__ import annotations

import ipaddress
import math
import os
import random as _random
import reprlib
from typing import Any, NoReturn

from ._callables import is_async_callable
from ._clock import MAX_WAIT, SYSTEM_CLOCK, Clock
from ._errors import ConfigError

__all__ = ["at_least", "clip", "digits", "clock_option", "fail", "fraction", "non_negative",
           "not_coroutine", "optional_clock", "optional_positive", "optional_random",
           "positive", "shown", "wait_seconds"]

MAX_SHOWN = 80
"""Characters of a bad value an error message shows; the rest is cut."""


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text``, cut to ``limit`` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` as an error message may show it: at most about ``limit``
    characters, never building the whole repr of a huge string or container."""
    try:
        text = _REPR.repr(value)
    except Exception:
        return f"a {type(value).__name__}"
    return clip(text, limit)


def digits(text: str, most: int = 18) -> int | None:
    """``text`` as an integer when it is 1 to ``most`` ASCII digits, else None: for
    numbers a request carries, which ``str.isdigit()`` and ``int()`` would take in
    other scripts (``"²"`` passes ``isdigit()`` and fails ``int()``; ``"٣"`` is 3)
    and which past 4,300 digits make ``int()`` raise."""
    if 0 < len(text) <= most and text.isascii() and text.isdigit():
        return int(text)
    return None


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_SHOWN
_REPR.maxlevel = 3


def fail(owner: str, field: str, value: object, valid: str) -> NoReturn:
    """Raise the ConfigError for ``owner``'s ``field``."""
    raise ConfigError(f"{owner}: {field} must be {valid}, got {shown(value)}", policy=owner)


def fail_choice(owner: str, valid: str, given: list[str]) -> NoReturn:
    """Raise the ConfigError for options given together wrongly: ``valid`` says
    which may be given together, ``given`` names those that were."""
    named = [f"{name}=" for name in given]
    got = ("none was given" if not named else
           f"{' and '.join(named)} {'was' if len(named) == 1 else 'were'} given")
    raise ConfigError(f"{owner}: give {valid}; {got}", policy=owner)


def _number(owner: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        fail(owner, field, value, "a number")
    return float(value)


def positive(owner: str, field: str, value: Any) -> float:
    """``value`` as a float, which must be > 0 and finite."""
    v = _number(owner, field, value)
    if not 0 < v < math.inf:
        fail(owner, field, value, "a finite number > 0" if v > 0 else "> 0")
    return v


def wait_seconds(owner: str, field: str, value: Any) -> float:
    """Like :func:`positive`, for a timeout handed as it is to a socket or a thread's
    wait: at most :data:`~meshlite._clock.MAX_WAIT` (about 292 years), the longest
    one the platform takes."""
    v = positive(owner, field, value)
    if v > MAX_WAIT:
        fail(owner, field, value, f"> 0 and at most {MAX_WAIT:g} s (the longest wait "
             "the platform takes)")
    return v


def optional_positive(owner: str, field: str, value: Any) -> float | None:
    """Like :func:`positive`, but ``None`` passes through."""
    return None if value is None else positive(owner, field, value)


def non_negative(owner: str, field: str, value: Any) -> float:
    """``value`` as a float, which must be >= 0 and finite."""
    v = _number(owner, field, value)
    if not 0 <= v < math.inf:
        fail(owner, field, value, "a finite number >= 0" if v > 0 else ">= 0")
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


def optional_clock(owner: str, value: Any) -> Clock | None:
    """``value`` when it is None or a :class:`~meshlite._clock.Clock`."""
    if value is not None and not isinstance(value, Clock):
        fail(owner, "clock", value, "a clock with monotonic(), sleep() and asleep(), or None")
    return value


_SHARED_RANDOM = _random.Random()
os.register_at_fork(after_in_child=_SHARED_RANDOM.seed)  # forked workers draw apart


def random_or_shared(value: _random.Random | None) -> _random.Random:
    """``value``, or the random source shared by every object given none: one
    Mersenne Twister state (about 2.5 KB) for all of them rather than one each,
    reseeded in a forked child so that workers do not pick in lock step."""
    return _SHARED_RANDOM if value is None else value


def optional_random(owner: str, value: Any) -> _random.Random | None:
    """``value`` when it is None or a ``random.Random``."""
    if value is not None and not isinstance(value, _random.Random):
        fail(owner, "random", value, "a random.Random or None")
    return value


def clock_option(owner: str, clock: object) -> Clock:
    """``clock``, which must be a :class:`Clock` or ``None`` (the system clock)."""
    return optional_clock(owner, clock) or SYSTEM_CLOCK


def not_coroutine(owner: str, field: str, value: object) -> None:
    """Refuse a coroutine function for an option that is called inline on every call
    (its result, a coroutine object, is always true and equal to nothing else)."""
    if is_async_callable(value):
        fail(owner, field, value,
             "a sync function, not a coroutine function (it is called inline, never awaited)")


def is_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_host(text: str) -> bool:
    """Whether ``text`` is an IP address or a host name: letters, digits, ``-``, ``_``
    and dots, and not dotted numbers that are no IPv4 address (``999.1.1.1``)."""
    if is_ip(text):
        return True
    if not text or text.startswith(".") or not all(c.isalnum() or c in "-._" for c in text):
        return False
    return not all(label.isdigit() for label in text.rstrip(".").split("."))


def listen_host(owner: str, field: str, host: object) -> str:
    """``host``, where a server listens: an IP address (an IPv6 one without brackets)
    or a host name; a URL, ``host:port`` or a malformed address failed only when
    binding, as a name that does not resolve."""
    if isinstance(host, str) and is_host(host):
        return host
    fail(owner, field, host, "an IP address or host name (no scheme, port, path or "
                             "brackets)")
