"""RateLimit: at most ``rate`` calls per ``per`` seconds, per key, by GCRA.

- ``_policy``: options, events and the :class:`RateLimit` policy.
- ``_handlers``: the per-call closures, one per (sync/async, keyed, mode).
- ``_gcra``: the GCRA state behind a two-method store (memory now, Redis later).
"""

from ...state._gcra_local import GcraStore
from ._policy import (
    DEFAULT_MAX_KEYS,
    DEFAULT_MODE,
    DEFAULT_PER,
    RateLimit,
    RateLimitOptions,
    RateLimitWaited,
)

__all__ = [
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MODE",
    "DEFAULT_PER",
    "GcraStore",
    "RateLimit",
    "RateLimitOptions",
    "RateLimitWaited",
]
