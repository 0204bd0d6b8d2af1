"""Schema of the policy sections of a service: one model per policy, whose fields are
the policy constructor's own argument names.

The models check structure and types only (pydantic, lax: ``"5"`` is read as 5 for
an integer, so environment overrides need no quoting rules). Ranges and
combinations are checked by constructing the policy, whose options dataclass
raises the ConfigError the loader maps to the option's path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

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


class Section(BaseModel):
    """Base of every section: unknown keys are errors, and a model is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def arguments(self) -> dict[str, Any]:
        """The options written in the file (unset ones keep the constructor default)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


def _shorthand(field: str, data: Any) -> Any:
    """A scalar where a mapping is expected is that mapping's main option."""
    return data if isinstance(data, dict) else {field: data}


ExceptionNames = list[str] | str
"""Exception classes by name: ``ConnectionError``, ``meshlite.CircuitOpenError``,
``httpx.ConnectError``."""


class TimeoutSection(Section):
    """``timeout: 2.0`` or ``timeout: {seconds: 2.0, pessimistic: true}``."""

    seconds: float
    pessimistic: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return _shorthand("seconds", data)


class BackoffSection(Section):
    """``backoff: 0.1`` (constant) or ``{type: exponential, initial, maximum,
    multiplier, jitter}`` / ``{type: decorrelated, initial, maximum}`` /
    ``{type: constant, delay}``."""

    type: Literal["exponential", "constant", "decorrelated"] = "exponential"
    initial: float | None = None
    maximum: float | None = None
    multiplier: float | None = None
    jitter: bool | None = None
    delay: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return data if isinstance(data, dict) else {"type": "constant", "delay": data}


class BudgetSection(Section):
    """``budget: {ratio, min_per_second, ttl}``; ``budget: null`` turns it off."""

    ratio: float | None = None
    min_per_second: float | None = None
    ttl: float | None = None


class RetrySection(Section):
    """``retry: {attempts, backoff, on, budget, respect_retry_after}``."""

    attempts: int | None = None
    backoff: BackoffSection | None = None
    on: ExceptionNames | None = None
    budget: BudgetSection | None = None
    respect_retry_after: bool | None = None

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_off(cls, value: Any) -> Any:
        return None if value is False else value


class CircuitBreakerSection(Section):
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


class RateLimitSection(Section):
    """``rate_limit:`` the arguments of ``ml.RateLimit`` (``rate: 100`` alone works)."""

    rate: float
    per: float | None = None
    burst: int | None = None
    mode: str | None = None
    max_wait: float | None = None
    max_keys: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return _shorthand("rate", data)


class BulkheadSection(Section):
    """``bulkhead:`` the arguments of ``ml.Bulkhead`` (``bulkhead: 32`` alone works)."""

    max_concurrent: int
    max_queue: int | None = None
    queue_timeout: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return _shorthand("max_concurrent", data)


class CacheSection(Section):
    """``cache:`` the arguments of ``ml.Cache`` (``cache: 30`` is a 30 s TTL)."""

    ttl: float
    maxsize: int | None = None
    stale_ttl: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return _shorthand("ttl", data)


class HedgeSection(Section):
    """``hedge:`` the arguments of ``ml.Hedge`` (async calls only)."""

    delay: float
    max_hedges: int | None = None
    on: ExceptionNames | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return _shorthand("delay", data)


class FaultInjectionSection(Section):
    """``fault_injection:`` the arguments of ``ml.FaultInjection``; ``error`` names an
    exception class."""

    rate: float
    error: str | None = None
    latency: float | None = None
    result: Any = None
    enabled: bool | None = None


class AdaptiveConcurrencySection(Section):
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


class FallbackSection(Section):
    """``fallback: {value: ...}``: answer failed calls with ``value``."""

    value: Any = None
    on: ExceptionNames | None = None


class TraceSection(Section):
    """``trace: true`` or ``trace: {name, attributes, record_args}``."""

    enabled: bool = True
    name: str | None = None
    attributes: dict[str, str | bool | int | float] | None = None
    record_args: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, data: Any) -> Any:
        return _shorthand("enabled", data)

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
