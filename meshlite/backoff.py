"""Backoff strategies for :class:`meshlite.Retry`.

``ml.backoff.exponential(initial=0.05, maximum=2.0)`` (full jitter, the default),
``ml.backoff.constant(0.1)`` and ``ml.backoff.decorrelated(initial=0.05, maximum=2.0)``.
A strategy is any :class:`Backoff`; tenacity ``wait_*`` objects are accepted too.
"""

from ._backoff import Backoff, constant, decorrelated, exponential

__all__ = ["Backoff", "constant", "decorrelated", "exponential"]
