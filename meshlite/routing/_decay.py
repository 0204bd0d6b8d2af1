"""The averages of an endpoint: their constants and how they fade with time.

An :class:`~meshlite.routing._endpoint.Endpoint` keeps exponentially weighted
averages (its peak-EWMA latency, its failure share and its load); this module holds
their time constants, the weight an average keeps over a pause, and
:class:`Averages`, the base of ``Endpoint`` that reads them decayed to now.
"""

from __future__ import annotations

import math

from .._clock import Clock

__all__ = [
    "Averages",
    "DEFAULT_EWMA_DECAY_SECONDS",
    "DEFAULT_FAILURE_PENALTY_SECONDS",
    "KEPT_PER_ANSWER",
    "LINEAR",
    "UNKNOWN_COST",
    "weight_kept",
]

DEFAULT_EWMA_DECAY_SECONDS = 10.0
"""Time constant of the peak-EWMA latency (Finagle's and Linkerd's default)."""

DEFAULT_FAILURE_PENALTY_SECONDS = 0.1
"""What a failed attempt costs beyond its latency (the retry it causes): an endpoint's
cost adds its recent failure share times this, so a backend that fails fast never
looks faster than the healthy ones, and one that fails rarely is barely penalised."""

KEPT_PER_ANSWER = 0.95
"""The averages' memory in answers: each answer weighs at least 1 - 0.95 = 1/20."""
# (About the last 20, outlier detection's failure-rate window), more after a pause.
# The latency and the failure share forget over 10 s or about 20 answers, whichever
# comes first: by time alone, a backend answering 1,000 times a second needed 10,000
# fast answers to forget one slow one, such as a stall of the client itself.

UNKNOWN_COST = 1e6
"""The cost of an endpoint with requests in flight and no latency measured yet."""
# Finagle's penalty: such an endpoint may be stuck on its first request, so it is
# the last choice until one returns.

LINEAR = 1e-3
"""Below this many time constants, ``exp(-x)`` is taken as ``1 - x``."""
# That is exact to within x * x / 2 (5e-7), with no exp call (a balancer reads the
# averages a few microseconds after they moved).

_exp = math.exp


def weight_kept(elapsed: float, horizon: float) -> float:
    """The weight an exponential average keeps over ``elapsed`` seconds with time
    constant ``horizon``: every average of an endpoint (its latency, failure share
    and load) is blended with it."""
    if elapsed <= 0.0:
        return 1.0
    if horizon <= 0.0:
        return 0.0
    x = elapsed / horizon
    return 1.0 - x if x < LINEAR else _exp(-x)


class Averages:
    """The averages read decayed to now (a base of ``Endpoint``, which keeps them)."""

    __slots__ = ()

    _clock: Clock
    _ewma: float
    _failing: float
    _stamp: float
    _tau: float

    @property
    def ewma(self) -> float:
        """The peak-EWMA latency in seconds, decayed to now (0.0 before any sample)."""
        ewma = self._ewma
        if ewma == 0.0:
            return 0.0
        return ewma * weight_kept(self._clock.monotonic() - self._stamp, self._tau)

    @property
    def failure_share(self) -> float:
        """The share of recent attempts that failed, 0..1, decayed to now (an EWMA
        over about the last 20 attempts)."""
        return self._failing * weight_kept(self._clock.monotonic() - self._stamp, self._tau)
