"""The circuit breaker: a state machine over a sliding window of outcomes."""

from ._breaker import CircuitBreaker

__all__ = ["CircuitBreaker"]
