"""RateLimit: at most ``rate`` calls per ``per`` seconds, per key, by GCRA.

- ``_options``: the validated options, ``DEFAULT_*`` constants and the event.
- ``_policy``: the :class:`RateLimit` policy.
- ``_handlers``: the per-call closures, one per (sync/async, keyed, mode).
- ``_shared``: the paths of a limit whose state lives in a store (the local GCRA
  is ``meshlite.state._gcra_local``).
"""

from ...state._gcra_local import GcraStore
from ._options import (
    DEFAULT_MAX_KEYS,
    DEFAULT_MODE,
    DEFAULT_PER,
    MAX_QUOTA_NAMES,
    RateLimitOptions,
    RateLimitWaited,
)
from ._policy import RateLimit

__all__ = [
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MODE",
    "DEFAULT_PER",
    "GcraStore",
    "MAX_QUOTA_NAMES",
    "RateLimit",
    "RateLimitOptions",
    "RateLimitWaited",
]
