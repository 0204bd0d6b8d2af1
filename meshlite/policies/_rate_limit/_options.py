"""RateLimit's validated options, its ``DEFAULT_*`` constants and its event."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

from ..._events import Event
from ..._validate import at_least, fail, non_negative, not_coroutine, positive
from ...state._base import check_store

__all__ = [
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MODE",
    "DEFAULT_PER",
    "MAX_QUOTA_NAMES",
    "RateLimitOptions",
    "RateLimitWaited",
]

DEFAULT_PER = 1.0
"""Seconds over which ``rate`` calls are allowed."""

DEFAULT_MODE: Literal["wait", "reject"] = "wait"
"""Callers over the limit wait for their slot."""

DEFAULT_MAX_KEYS = 10_000
"""Keys (tenants) whose state is kept before the least recently used is forgotten."""

MAX_QUOTA_NAMES = 1024
"""Quota names (``name=None`` with a store: the calls' services, else operations) whose
store state a limiter keeps at hand; past them it lets go of all and asks the store
again as each comes back (the quotas themselves live in the store)."""

_MODES = ("wait", "reject")


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitWaited(Event):
    """A call waited ``waited`` seconds for its rate-limit slot, then ran."""

    waited: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitOptions:
    """Validated options of :class:`RateLimit`."""

    rate: float
    per: float = DEFAULT_PER
    burst: int | None = None
    mode: Literal["wait", "reject"] = DEFAULT_MODE
    max_wait: float | None = None
    key: Callable[..., Hashable] | None = None
    max_keys: int = DEFAULT_MAX_KEYS
    store: object = None
    name: str | None = None

    def __post_init__(self) -> None:
        if hasattr(self.rate, "max_rate") and hasattr(self.rate, "time_period"):
            fail("RateLimit", "rate", self.rate, "a number of calls; for an "
                 "aiolimiter.AsyncLimiter, use ml.RateLimit.from_aiolimiter(limiter)")
        positive("RateLimit", "rate", self.rate)
        positive("RateLimit", "per", self.per)
        if self.burst is not None:
            at_least("RateLimit", "burst", self.burst, 1)
        if self.mode not in _MODES:
            fail("RateLimit", "mode", self.mode, "'wait' or 'reject'")
        if self.max_wait is not None:
            non_negative("RateLimit", "max_wait", self.max_wait)
        if self.key is not None and not callable(self.key):
            fail("RateLimit", "key", self.key, "None or a callable taking the call's arguments")
        not_coroutine("RateLimit", "key", self.key)
        at_least("RateLimit", "max_keys", self.max_keys, 1)
        check_store("RateLimit", self.store, "rate_limit")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            fail("RateLimit", "name", self.name, "a non-empty string or None")

    @property
    def effective_burst(self) -> int:
        """``burst``, or by default one period's worth of calls (at least 1)."""
        return self.burst if self.burst is not None else max(1, int(self.rate))
