"""Schema of the policy sections of a service: one model per policy, whose fields are
the policy constructor's own argument names.

The models (``msgspec.Struct``) check structure and types only, converted lax by
``_walk`` (``"5"`` is read as 5 for an integer, so environment overrides need no
quoting rules). Ranges and combinations are checked by constructing the policy,
whose options dataclass raises the ConfigError the loader maps to the option's path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import msgspec

from ._fieldset import fields_set, to_data
from ._problems import shown

__all__ = [
    "POLICY_SECTIONS",
    "AdaptiveConcurrencySection",
    "BackoffSection",
    "BudgetSection",
    "BulkheadSection",
    "CacheSection",
    "CircuitBreakerSection",
    "FallbackSection",
    "FaultInjectionSection",
    "HedgeSection",
    "RateLimitSection",
    "RetrySection",
    "Section",
    "TimeoutSection",
    "TraceSection",
]


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
              dict=True):
    """Base of every section: unknown keys are errors, a section is immutable and
    compares by value.

    ``_before`` (a shorthand: the raw value to the mapping it stands for) and
    ``_field_hooks`` (field name to a function of its raw value) are applied by the
    loader (``_walk``) before conversion.
    """

    _before: ClassVar[Any] = None  # Callable[[Any], Any] | None
    _field_hooks: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def arguments(self) -> dict[str, Any]:
        """The options written in the file (unset ones keep the constructor default)."""
        written = fields_set(self)
        return {name: getattr(self, name) for name in self.__struct_fields__
                if name in written}

    def dump(self, *, exclude_unset: bool = False) -> dict[str, Any]:
        """The section as plain data (with ``exclude_unset``, only what the file set)."""
        data: dict[str, Any] = to_data(self, exclude_unset=exclude_unset)
        return data

    def __repr__(self) -> str:
        # As masked_config shows values (a config logged whole shows no secret): a
        # secret field or header value as ***, a URL without password or token.
        fields = ", ".join(f"{name}={shown(name, getattr(self, name))!r}"
                           for name in self.__struct_fields__)
        return f"{type(self).__name__}({fields})"


def _shorthand(field: str) -> Callable[[Any], Any]:
    """A scalar where a mapping is expected is that mapping's main option."""
    return lambda data: data if isinstance(data, dict) else {field: data}


ExceptionNames = list[str] | str
"""Exception classes by name: ``ConnectionError``, ``meshlite.CircuitOpenError``,
``httpx.ConnectError``."""


class TimeoutSection(Section, frozen=True):
    """``timeout: 2.0`` or ``timeout: {seconds: 2.0, pessimistic: true}``."""

    seconds: float
    pessimistic: bool | None = None

    _before = staticmethod(_shorthand("seconds"))


def _constant_backoff(data: Any) -> Any:
    return data if isinstance(data, dict) else {"type": "constant", "delay": data}


class BackoffSection(Section, frozen=True):
    """``backoff: 0.1`` (constant) or ``{type: exponential, initial, maximum,
    multiplier, jitter}`` / ``{type: decorrelated, initial, maximum}`` /
    ``{type: constant, delay}``."""

    type: Literal["exponential", "constant", "decorrelated"] = "exponential"
    initial: float | None = None
    maximum: float | None = None
    multiplier: float | None = None
    jitter: bool | None = None
    delay: float | None = None

    _before = staticmethod(_constant_backoff)


class BudgetSection(Section, frozen=True):
    """``budget: {ratio, min_per_second, ttl}``; ``budget: null`` turns it off."""

    ratio: float | None = None
    min_per_second: float | None = None
    ttl: float | None = None


def _budget_off(value: Any) -> Any:
    return None if value is False else value


class RetrySection(Section, frozen=True):
    """``retry: {attempts, backoff, on, budget, respect_retry_after, max_retry_after}``."""

    attempts: int | None = None
    backoff: BackoffSection | None = None
    on: ExceptionNames | None = None
    budget: BudgetSection | None = None
    respect_retry_after: bool | None = None
    max_retry_after: float | None = None

    _field_hooks = {"budget": _budget_off}


class CircuitBreakerSection(Section, frozen=True):
    """``circuit_breaker:`` the arguments of ``ml.CircuitBreaker``."""

    failure_rate: float | None = None
    window: int | float | None = None  # an int for count windows, seconds for time ones
    window_type: str | None = None
    min_calls: int | None = None
    slow_call_seconds: float | None = None
    slow_call_rate: float | None = None
    open_seconds: float | None = None
    half_open_calls: int | None = None
    failure_on: ExceptionNames | None = None
    name: str | None = None


class RateLimitSection(Section, frozen=True):
    """``rate_limit:`` the arguments of ``ml.RateLimit`` (``rate: 100`` alone works)."""

    rate: float
    per: float | None = None
    burst: int | None = None
    mode: str | None = None
    max_wait: float | None = None
    max_keys: int | None = None

    _before = staticmethod(_shorthand("rate"))


class BulkheadSection(Section, frozen=True):
    """``bulkhead:`` the arguments of ``ml.Bulkhead`` (``bulkhead: 32`` alone works)."""

    max_concurrent: int
    max_queue: int | None = None
    queue_timeout: float | None = None

    _before = staticmethod(_shorthand("max_concurrent"))


class CacheSection(Section, frozen=True):
    """``cache:`` the arguments of ``ml.Cache`` (``cache: 30`` is a 30 s TTL)."""

    ttl: float
    maxsize: int | None = None
    stale_ttl: float | None = None

    _before = staticmethod(_shorthand("ttl"))


class HedgeSection(Section, frozen=True):
    """``hedge:`` the arguments of ``ml.Hedge`` (async calls only)."""

    delay: float
    max_hedges: int | None = None
    on: ExceptionNames | None = None
    budget: BudgetSection | None = None

    _field_hooks = {"budget": _budget_off}

    _before = staticmethod(_shorthand("delay"))


class FaultInjectionSection(Section, frozen=True):
    """``fault_injection:`` the arguments of ``ml.FaultInjection``; ``error`` names an
    exception class."""

    rate: float
    error: str | None = None
    latency: float | None = None
    result: Any = None
    enabled: bool | None = None


class AdaptiveConcurrencySection(Section, frozen=True):
    """``adaptive_concurrency:`` the arguments of ``ml.AdaptiveConcurrency``."""

    initial_limit: int | None = None
    min_limit: int | None = None
    max_limit: int | None = None
    algorithm: str | None = None
    tolerance: float | None = None
    smoothing: float | None = None
    queue_size: float | None = None
    window: float | None = None
    min_samples: int | None = None
    probe_interval: float | None = None
    probe_samples: int | None = None


class FallbackSection(Section, frozen=True):
    """``fallback: {value: ...}``: answer failed calls with ``value``."""

    value: Any = None
    on: ExceptionNames | None = None


class TraceSection(Section, frozen=True):
    """``trace: true`` or ``trace: {name, attributes, record_args}``."""

    enabled: bool = True
    name: str | None = None
    attributes: dict[str, str | bool | int | float] | None = None
    record_args: bool | None = None

    _before = staticmethod(_shorthand("enabled"))

    def arguments(self) -> dict[str, Any]:
        """The options for ``ml.Trace`` (``enabled`` is the section's own switch)."""
        return {k: v for k, v in super().arguments().items() if k != "enabled"}


POLICY_SECTIONS: dict[str, type[Section]] = {
    # outermost first: the recommended order (docs/recommended-order.md)
    "trace": TraceSection,
    "fallback": FallbackSection,
    "cache": CacheSection,
    "timeout": TimeoutSection,
    "retry": RetrySection,
    "hedge": HedgeSection,
    "circuit_breaker": CircuitBreakerSection,
    "rate_limit": RateLimitSection,
    "adaptive_concurrency": AdaptiveConcurrencySection,
    "bulkhead": BulkheadSection,
    "fault_injection": FaultInjectionSection,
}
"""Each policy section of a service and its model, in pipeline order."""
