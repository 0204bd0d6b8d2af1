"""Endpoints: a backend's live state inside one service, which balancers read.

Each service wraps each of its :class:`~meshlite.routing._backend.Backend` objects in
an :class:`Endpoint`, which holds what routing learns at run time: requests in flight,
a peak-EWMA latency, the load it was measured under, counters, a bounded reservoir of
recent latencies, and the outlier and health state. The attempt lifecycle and the
cost balancers compare are here; the reservoir and its histogram are its base
:class:`~meshlite.routing._latencies.Latencies`, the outlier and health fields
:class:`~meshlite.routing._standing.Standing`, and the averages' constants, decay
maths and decayed reads (``ewma``, ``failure_share``) :mod:`meshlite.routing._decay`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from .._clock import Clock
from .._fork import fork_safe
from .._validate import fail
from ._backend import Backend
from ._decay import (
    DEFAULT_EWMA_DECAY_SECONDS,
    DEFAULT_FAILURE_PENALTY_SECONDS,
    KEPT_PER_ANSWER,
    LINEAR,
    UNKNOWN_COST,
    Averages,
)
from ._latencies import DEFAULT_RESERVOIR_SIZE, Latencies, percentile

__all__ = [
    "DEFAULT_EWMA_DECAY_SECONDS",
    "DEFAULT_FAILURE_PENALTY_SECONDS",
    "DEFAULT_RESERVOIR_SIZE",
    "Endpoint",
    "percentile",
]

_ABANDONED = -1.0  # Endpoint.succeeded's outcome for an attempt that was cancelled

_exp = math.exp


class Endpoint(Averages, Latencies):
    """A backend's live state inside one service; what balancers choose among.

    Counters move under a short per-endpoint lock because sync calls may run on
    many threads. Balancers only read (``in_flight``, ``weight``, :meth:`cost`).

    Attributes:
        backend: The configured :class:`Backend`.
        address: ``backend.address``.
        weight: ``backend.weight``.
        in_flight: Attempts running on this backend now.
        requests: Attempts finished (successes and failures).
        answered: Whether the backend has answered here: an attempt finished
            (success or failure) or a health probe succeeded.
        errors: Attempts that failed.

    Args:
        backend: The backend.
        clock: The service's clock.
        decay_seconds: Time constant of the peak-EWMA latency.
        reservoir: How many recent latencies to keep (percentiles, and the
            histogram a mesh's metrics count from them).
        on_answer: Called once, when the backend first answers (``answered``
            turns True), under the endpoint's lock: it must not call back in.

    Raises:
        ConfigError: ``reservoir`` is not an int >= 1.
    """

    __slots__ = (
        "__weakref__",
        "_answer_time",
        "_busy_from",
        "_clock",
        "_done",
        "_ewma",
        "_failing",
        "_load",
        "_lock",
        "_pending",
        "_stamp",
        "_starts",
        "_tau",
        "address",
        "backend",
        "errors",
        "in_flight",
        "requests",
        "weight",
    )

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        *,
        decay_seconds: float = DEFAULT_EWMA_DECAY_SECONDS,
        reservoir: int = DEFAULT_RESERVOIR_SIZE,
        on_answer: Callable[[], None] | None = None,
    ) -> None:
        if isinstance(reservoir, bool) or not isinstance(reservoir, int) or reservoir < 1:
            fail("Endpoint", "reservoir", reservoir, "an int >= 1")
        self.backend = backend
        self.address = backend.address
        self.weight = backend.weight
        self._clock = clock
        self._tau = decay_seconds
        # Answers closer together than this keep KEPT_PER_ANSWER (the time weight
        # would keep more).
        self._answer_time = -decay_seconds * math.log(KEPT_PER_ANSWER)
        self._lock = fork_safe(threading.Lock())
        self._ewma = 0.0
        # The load recent latencies were measured under: the requests in flight
        # here, averaged over time with the latency as horizon (see _average).
        self._load = 1.0
        self._busy_from = clock.monotonic()
        # The load's integral over time since `_busy_from` is
        # `_done + _pending * now - _starts`: each attempt in flight counts its
        # age, and `_done` holds what those that ended counted (no work in begin).
        self._done = 0.0
        # The share of recent attempts that failed, on the same clock and stamp.
        self._failing = 0.0
        # The attempts in flight that began here, and the sum of their start times:
        # their mean age is a floor under the cost (see cost). Counted apart from
        # in_flight, which is public and may be set by hand (tests do).
        self._pending = 0
        self._starts = 0.0
        self._stamp = clock.monotonic()
        super().__init__(reservoir, on_answer)
        self.in_flight = 0
        self.requests = 0
        self.errors = 0

    def reweigh(self, backend: Backend) -> None:
        """Stand for ``backend``, of this endpoint's address with another weight or
        metadata (discovery, ``set_backends``): everything learnt of the address
        (latencies, load, counts, ejection and health) stays."""
        with self._lock:
            self.backend, self.weight = backend, backend.weight

    def after_fork(self) -> None:
        """In a forked child (its service calls this): no attempt in flight. The
        parent's attempts never end here (one of the thread that forked does, and
        is not counted below zero)."""
        self.in_flight, self._pending, self._starts, self._done = 0, 0, 0.0, 0.0

    # -- the attempt lifecycle -------------------------------------------------

    # The lock is taken with acquire()/release(): `with lock:` costs twice as much on
    # CPython (it looks up and calls __enter__/__exit__), and these run per attempt.

    def begin(self) -> float:
        """Count an attempt in flight; returns its start time on the service clock."""
        now = self._clock.monotonic()
        lock = self._lock
        lock.acquire()
        try:
            if not self._pending:  # an idle time ends: it lowers the load (level 0)
                if self._load > 1.0:  # (at most 1, it would scale no cost)
                    self._average(now - self._busy_from, 0.0)
                self._busy_from = now  # (and _done is 0.0: see succeeded)
            self.in_flight += 1
            self._pending += 1
            self._starts += now
        finally:
            lock.release()
        return now

    def succeeded(self, start: float, _outcome: float = 0.0) -> float:
        """The attempt begun at ``start`` succeeded; returns its latency in seconds
        (so a caller recording it needs no clock read of its own). Outlier
        detection's state moves here too, under the same lock: the streak of
        failures ends, and the failure-rate window (when kept) records a success."""
        # One bookkeeping for every end: `_outcome` 1.0 failed, -1.0 abandoned.
        now = self._clock.monotonic()
        rtt = now - start
        lock = self._lock
        lock.acquire()
        try:
            pending = self._pending  # the load since _busy_from (see _average)
            area, held = self._done + pending * now - self._starts, now - self._busy_from
            if held > 0.0:
                if area > held or self._load > 1.0:
                    self._average(held, area)
                else:  # both at most 1 (see _average)
                    self._load = area / held
            self._busy_from = now
            if self.in_flight:  # 0: an attempt running when this child was forked
                self.in_flight -= 1
            if pending > 1:
                self._pending = pending = pending - 1
                self._starts = starts = self._starts - start
                self._done = starts - pending * now  # (no area since now)
            else:  # none left (or more ends than begins, a caller's mistake)
                self._pending, self._starts, self._done = 0, 0.0, 0.0
            if _outcome < 0.0:  # abandoned: it says nothing about the backend
                return rtt
            # The weight the averages keep (the latency's and the failure share's):
            # KEPT_PER_ANSWER, or weight_kept's maths when smaller.
            w = KEPT_PER_ANSWER
            if now - self._stamp > self._answer_time:
                w = _exp((self._stamp - now) / self._tau)
            requests = self.requests = self.requests + 1
            if _outcome:
                self.errors += 1  # (outlier detection counts it: OutlierDetection.failed)
                self._failing = _outcome + (self._failing - _outcome) * w
            else:  # a success ends outlier detection's streak and enters its window
                self.consecutive_failures = 0
                outcomes = self.outcomes
                if outcomes is not None:
                    outcomes.append(False)
                if self._failing:  # (0.0 while the backend has not failed lately)
                    self._failing *= w
            self._latencies.append(rtt)
            if requests >= self._count_at:
                self._milestone()
            ewma = self._ewma if requests > 1 else 0.0  # (a probe's prior goes)
            # The peak EWMA of latency: a slower sample replaces it at once.
            self._ewma = rtt if rtt >= ewma else rtt + (ewma - rtt) * w
            self._stamp = now
        finally:
            lock.release()
        return rtt

    def failed(self, start: float) -> float:
        """The attempt begun at ``start`` failed: counted as an error; its latency
        enters the EWMAs as it was, and the failure raises the endpoint's failure
        share, which :meth:`cost` charges ``DEFAULT_FAILURE_PENALTY_SECONDS`` for.
        Returns the latency in seconds."""
        return self.succeeded(start, 1.0)

    def probed(self, rtt: float) -> None:
        """A health probe of this backend answered in ``rtt`` seconds. Before any
        attempt has measured the endpoint, the probe's latency is its prior: the
        estimate starts from it (as one attempt's sample would), so the first
        requests of a cold client avoid a backend whose probes are slow instead of
        spreading evenly. It is used once, and the first attempt's latency replaces
        it (a probe's own first request may have paid the probe client's set-up)."""
        with self._lock:
            if self._ewma == 0.0 and self.requests == 0:  # as a first answer would
                self._ewma = rtt
                self._stamp = self._clock.monotonic()
            if not self.answered:
                self._milestone()

    def abandoned(self, start: float | None = None) -> None:
        """The attempt begun at ``start`` was cancelled by the caller: it no longer
        counts, and says nothing about the backend. (Without ``start``, the mean
        age of the attempts in flight is kept as it was.)"""
        if start is None:
            with self._lock:
                pending = self._pending
                start = self._starts / pending if pending else self._clock.monotonic()
        self.succeeded(start, _ABANDONED)

    def _average(self, held: float, area: float) -> None:
        # The load's time average, with the latency as its time constant (the
        # requests answering now were in flight for about that long): the level
        # held for the last `held` seconds (`area`, the integral, over `held`)
        # weighs 1 - exp(-held / latency), the average before the rest. A load of
        # 1 or less scales no cost (see cost): while the average and the level
        # both are, the level alone stands for the average (no exp; callers skip
        # this then). Caller holds the lock.
        if held > 0.0:
            horizon = self._ewma
            kept = _exp(-held / horizon) if horizon > 0.0 else 0.0
            self._load = self._load * kept + area / held * (1.0 - kept)

    # -- what balancers and snapshots read -------------------------------------

    def cost(self, now: float | None = None) -> float:
        """The time a new attempt here is expected to cost, divided by the weight;
        the p2c_ewma balancer sends the attempt to the cheaper of two endpoints.

        It is the peak-EWMA latency, scaled by the load a new attempt would make
        (``in_flight + 1``) over the load that latency was measured under (the
        requests in flight here, averaged over about the last latency), never
        scaled below 1; at least the mean time the requests in flight here have
        waited so far; plus the failure share times
        ``DEFAULT_FAILURE_PENALTY_SECONDS`` (what a failure costs beyond its
        latency). Finagle multiplies the latency by ``in_flight + 1`` outright,
        which counts the load twice when the latency was measured under that load
        already (docs/routing.md, "The cost p2c_ewma compares").

        Args:
            now: The service clock's time, when the caller has read it already
                (comparing two endpoints reads it once); None reads it.
        """
        latency = self._ewma
        if not latency:  # no sample yet
            in_flight = self.in_flight
            return UNKNOWN_COST + in_flight if in_flight else 0.0
        if now is None:
            now = self._clock.monotonic()
        x = (now - self._stamp) / self._tau  # every average fades (weight_kept, inlined)
        kept = 1.0 if x <= 0.0 else 1.0 - x if x < LINEAR else _exp(-x)
        latency *= kept
        load = self._load  # (as of its last change)
        would = self.in_flight + 1
        if would > load:  # more load than the latency was measured under
            latency *= would / load if load > 1.0 else would
        pending = self._pending
        if pending:  # requests in flight here have waited this long on average
            age = now - self._starts / pending
            if age > latency:
                latency = age
        if self._failing:  # (0.0 while the backend has not failed lately)
            latency += kept * self._failing * DEFAULT_FAILURE_PENALTY_SECONDS
        return latency / self.weight

    def __repr__(self) -> str:
        return f"Endpoint({self.address!r}, in_flight={self.in_flight})"

