"""AdaptiveConcurrency: a concurrency limit that finds itself from observed latency.

The limiter compares the latency of recent calls with the service's no-load
latency: while they match, the service has spare capacity and the limit grows;
when latency rises, calls are queueing downstream and the limit shrinks. The
update rules are Netflix concurrency-limits' gradient and Vegas; the no-load
latency is measured as Envoy's adaptive concurrency filter does, by a short
probe at low concurrency. docs/policies/adaptive_concurrency.md has the formulas.

- ``_options``: the validated options, ``DEFAULT_*`` constants and the event.
- ``_policy``: the :class:`AdaptiveConcurrency` policy and its per-call handlers.
- ``_limiter``: the shared state (admission, windows, probes) and the update rules.
"""

from ._options import (
    DEFAULT_ALGORITHM,
    DEFAULT_INITIAL_LIMIT,
    DEFAULT_MAX_LIMIT,
    DEFAULT_MIN_LIMIT,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_PROBE_JITTER,
    DEFAULT_PROBE_SAMPLES,
    DEFAULT_SMOOTHING,
    DEFAULT_TOLERANCE,
    DEFAULT_WINDOW,
    AdaptiveConcurrencyOptions,
    ConcurrencyLimitChanged,
)
from ._policy import AdaptiveConcurrency

__all__ = [
    "DEFAULT_ALGORITHM", "DEFAULT_INITIAL_LIMIT", "DEFAULT_MAX_LIMIT", "DEFAULT_MIN_LIMIT",
    "DEFAULT_MIN_SAMPLES", "DEFAULT_PROBE_INTERVAL", "DEFAULT_PROBE_JITTER",
    "DEFAULT_PROBE_SAMPLES", "DEFAULT_SMOOTHING", "DEFAULT_TOLERANCE", "DEFAULT_WINDOW",
    "AdaptiveConcurrency", "AdaptiveConcurrencyOptions", "ConcurrencyLimitChanged",
]
