"""Backoff strategies for :class:`meshlite.Retry`.

``ml.backoff.exponential(initial=0.05, maximum=2.0)`` (full jitter, the default),
``ml.backoff.constant(0.1)`` and ``ml.backoff.decorrelated(initial=0.05, maximum=2.0)``.
A strategy is any :class:`Backoff`, a callable ``(attempt, previous, rng) -> seconds``;
tenacity ``wait_*`` objects are accepted too (wrapped in :class:`TenacityBackoff`).
"""

from ._backoff import (
    Backoff,
    ConstantBackoff,
    DecorrelatedBackoff,
    ExponentialBackoff,
    TenacityBackoff,
    constant,
    decorrelated,
    exponential,
)

__all__ = [
    "Backoff",
    "constant",
    "decorrelated",
    "exponential",
    "ConstantBackoff",
    "DecorrelatedBackoff",
    "ExponentialBackoff",
    "TenacityBackoff",
]
