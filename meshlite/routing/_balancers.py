"""Load balancers: choose one endpoint among the candidates for an attempt.

A balancer is any object with ``pick(endpoints, ctx) -> endpoint`` (the
:class:`Balancer` protocol). ``endpoints`` is never empty and holds only the
endpoints this attempt may use (in rotation, not yet tried by this call). A
balancer may also define ``update(endpoints)``, called with all of the service's
endpoints whenever the set changes (``ring_hash`` builds its ring there).

The balancers below are meant to be fast: no lock, no allocation on the common path.
Their small races under threads (two picks reading the same counter) only make the
choice slightly less even; they never break it.
"""

from __future__ import annotations

import bisect
import itertools
import random as _random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .._arguments import Explained
from .._context import CallContext
from .._validate import fail, optional_random, random_or_shared
from ._endpoint import Endpoint

__all__ = [
    "DEFAULT_BALANCER",
    "BALANCERS",
    "Balancer",
    "LeastRequests",
    "P2CEwma",
    "Random",
    "RoundRobin",
    "WeightedRoundRobin",
    "make_balancer",
]


DEFAULT_BALANCER = "p2c_ewma"
"""Power of two choices on peak-EWMA latency times load, as in Finagle and Linkerd."""


@runtime_checkable
class Balancer(Protocol):
    """Chooses the endpoint for one attempt."""

    def pick(self, endpoints: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        """Return one of ``endpoints`` (never empty) for the attempt described by ``ctx``."""
        ...


class _Base(Explained):
    """Shared bits of the built-in balancers."""

    name = "balancer"

    def __init__(self, random: _random.Random | None = None) -> None:
        random = optional_random(type(self).__name__, random)
        self._rng = random_or_shared(random)

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Called with all of the service's endpoints when the set changes."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RoundRobin(_Base):
    """Each attempt goes to the next endpoint in turn (from a random start, so many
    clients do not move in lock step). Ignores weights."""

    name = "round_robin"

    def __init__(self, random: _random.Random | None = None) -> None:
        super().__init__(random)
        self._next = self._rng.randrange(1 << 16)

    def pick(self, endpoints: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        i = self._next
        self._next = i + 1
        return endpoints[i % len(endpoints)]


class WeightedRoundRobin(_Base):
    """Smooth weighted round robin, as in nginx: with weights 5, 1, 1 the order is
    a a b a c a a, never five ``a`` in a row.

    Each pick adds every candidate's weight to its running score, takes the highest,
    and subtracts the total weight from the winner: O(n) a pick. With equal weights
    (as :meth:`update` last saw them) that order is plain round robin, taken in O(1).
    """

    name = "weighted_round_robin"

    def __init__(self, random: _random.Random | None = None) -> None:
        super().__init__(random)
        self._score: dict[Endpoint, float] = {}
        self._uniform = False
        self._next = 0

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        keep = set(endpoints)
        self._score = {e: s for e, s in self._score.items() if e in keep}
        self._uniform = len({e.weight for e in endpoints}) <= 1

    def pick(self, endpoints: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        if self._uniform:
            i = self._next
            self._next = i + 1
            return endpoints[i % len(endpoints)]
        score = self._score
        total = 0.0
        best = endpoints[0]
        best_score = -1.0e300
        for e in endpoints:
            s = score.get(e, 0.0) + e.weight
            score[e] = s
            total += e.weight
            if s > best_score:
                best, best_score = e, s
        score[best] = best_score - total
        return best


class Random(_Base):
    """A random endpoint, in proportion to the weights.

    With unequal weights a pick bisects the candidates' running sums of weights,
    kept for the last candidate sequence seen (the service passes the same tuple
    until its rotation changes): O(log n) a pick, O(n) once per change."""

    name = "random"

    def __init__(self, random: _random.Random | None = None) -> None:
        super().__init__(random)
        self._uniform = False
        self._sums: tuple[Sequence[Endpoint] | None, list[float]] = (None, [])

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self._uniform = len({e.weight for e in endpoints}) <= 1

    def pick(self, endpoints: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        r = self._rng.random()
        if self._uniform:
            return endpoints[int(r * len(endpoints))]
        of, sums = self._sums  # (one read: another thread may replace the pair)
        if of is not endpoints:
            sums = list(itertools.accumulate(e.weight for e in endpoints))
            self._sums = (endpoints, sums)
        return endpoints[min(bisect.bisect_right(sums, r * sums[-1]), len(endpoints) - 1)]


def _two(rng: _random.Random, endpoints: Sequence[Endpoint]) -> tuple[Endpoint, Endpoint]:
    """Two distinct endpoints at random (the caller ensures there are at least two)."""
    n = len(endpoints)
    r = rng.random
    i = int(r() * n)
    j = int(r() * (n - 1))
    if j >= i:
        j += 1
    return endpoints[i], endpoints[j]


class LeastRequests(_Base):
    """Power of two choices on requests in flight (divided by weight), as Envoy's
    ``LEAST_REQUEST``: pick two at random, send to the less loaded."""

    name = "least_requests"

    def pick(self, endpoints: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        if len(endpoints) == 1:
            return endpoints[0]
        a, b = _two(self._rng, endpoints)
        if (b.in_flight + 1) / b.weight < (a.in_flight + 1) / a.weight:
            return b
        return a


class P2CEwma(_Base):
    """Power of two choices on peak-EWMA latency times load (the default).

    As Finagle's and Linkerd's balancer: pick two endpoints at random and send to the
    one with the lower :meth:`Endpoint.cost`: the peak-EWMA latency scaled by
    ``(in_flight + 1)`` over the load that latency was measured under (never below
    1), at least the mean time the requests in flight there have waited, plus the
    failure share times ``DEFAULT_FAILURE_PENALTY_SECONDS``, divided by the weight.
    The peak EWMA jumps up at once on a slow answer and decays over
    ``DEFAULT_EWMA_DECAY_SECONDS``, so a backend that slows down sheds load within a
    few calls, and one that recovers gets it back as its average decays.
    """

    name = "p2c_ewma"

    def pick(self, endpoints: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        n = len(endpoints)
        if n == 1:
            return endpoints[0]
        r = self._rng.random  # _two, inlined: this runs per attempt
        i = int(r() * n)
        j = int(r() * (n - 1))
        if j >= i:
            j += 1
        a, b = endpoints[i], endpoints[j]
        now = a._clock.monotonic()  # one clock read for both
        return b if b.cost(now) < a.cost(now) else a


BALANCERS: dict[str, Callable[..., Any]] = {
    "round_robin": RoundRobin,
    "weighted_round_robin": WeightedRoundRobin,
    "random": Random,
    "least_requests": LeastRequests,
    "p2c_ewma": P2CEwma,
}
"""The built-in balancers by name (``ring_hash`` is added by its module)."""


def make_balancer(spec: Any, owner: str, random: _random.Random | None) -> Balancer:
    """A balancer for ``spec``: a name from :data:`BALANCERS` (a fresh instance) or an
    object with a ``pick`` method (used as is).

    Raises:
        ConfigError: an unknown name or an object without ``pick``.
    """
    if isinstance(spec, str):
        factory = BALANCERS.get(spec)
        if factory is None:
            fail(owner, "balancer", spec, "one of " + ", ".join(sorted(BALANCERS)))
        balancer: Balancer = factory(random=random)
        return balancer
    if not isinstance(spec, Balancer):
        fail(owner, "balancer", spec, "a balancer name or an object with pick(endpoints, ctx)")
    return spec
