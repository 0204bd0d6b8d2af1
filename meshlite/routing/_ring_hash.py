"""Consistent hashing with bounded loads (the ``ring_hash`` balancer)."""

from __future__ import annotations

import bisect
import hashlib
import math
import random as _random
from collections.abc import Callable, Sequence
from typing import Any

from .._context import CallContext
from .._validate import at_least, fail, positive
from ._balancers import BALANCERS, _Base
from ._endpoint import Endpoint

__all__ = ["DEFAULT_LOAD_FACTOR", "DEFAULT_REPLICAS", "RingHash"]

DEFAULT_REPLICAS = 100
"""Points on the ring per backend of weight 1 (more points, more even shares)."""

DEFAULT_LOAD_FACTOR = 1.25
"""No backend takes more than 1.25 times the average load (Google's bounded loads)."""


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class RingHash(_Base):
    """Consistent hashing: calls with the same key go to the same backend while it is
    in rotation, and ejecting or adding a backend moves only its share of keys.

    The key comes from the request header ``header`` (HTTP), else from
    ``key(...)``: called with the call's arguments for ``mesh.call`` (without the
    backend) and with the ``httpx.Request`` for ``mesh.http``. A call without a key
    goes to a random backend. With bounded loads, a backend already carrying more
    than ``load_factor`` times the average requests in flight is skipped for the
    next one on the ring, so one hot key cannot overload a backend.

    Args:
        key: Function returning the hash key (any value; ``str()`` is hashed), or None.
        header: Name of the request header holding the key, or None.
        replicas: Ring points per unit of weight, >= 1.
        load_factor: Bound on load relative to the average, > 1 (``math.inf`` turns
            bounding off).
        random: Random source for calls without a key.

    Raises:
        ConfigError: a bad argument.
    """

    name = "ring_hash"

    def __init__(
        self,
        key: Callable[..., Any] | None = None,
        *,
        header: str | None = None,
        replicas: int = DEFAULT_REPLICAS,
        load_factor: float = DEFAULT_LOAD_FACTOR,
        random: _random.Random | None = None,
    ) -> None:
        super().__init__(random)
        if key is not None and not callable(key):
            fail("RingHash", "key", key, "a callable or None")
        if header is not None and (not isinstance(header, str) or not header):
            fail("RingHash", "header", header, "a header name or None")
        self.key = key
        self.header = header
        self.replicas = at_least("RingHash", "replicas", replicas, 1)
        if load_factor != math.inf:
            load_factor = positive("RingHash", "load_factor", load_factor)
        if load_factor <= 1.0:
            fail("RingHash", "load_factor", load_factor, "> 1")
        self.load_factor = float(load_factor)
        self._points: list[int] = []
        self._owners: list[Endpoint] = []
        self._members: frozenset[Endpoint] = frozenset()
        self._built: tuple[tuple[Endpoint, float], ...] = ()

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        built = tuple((e, e.weight) for e in endpoints)
        if built == self._built:  # the same backends and weights (a discovery re-read)
            return
        # Weights count relative to the largest power of ten not above the largest one
        # (DNS SRV weights run to 65535: raw, 20 backends of weight 60 made 120,000
        # points, built on the event loop in a second): the shares stay, the points
        # stay about `replicas` a backend, and weights below 10 count as they are.
        top = max((e.weight for e in endpoints), default=1.0)
        scale = 10.0 ** math.floor(math.log10(top)) if top >= 10.0 else 1.0
        ring: list[tuple[int, str, Endpoint]] = []
        for e in endpoints:
            for i in range(max(1, round(self.replicas * e.weight / scale))):
                ring.append((_hash(f"{e.address}#{i}".encode()), e.address, e))
        ring.sort(key=lambda p: (p[0], p[1]))
        self._points = [p[0] for p in ring]
        self._owners = [p[2] for p in ring]
        self._members = frozenset(endpoints)
        self._built = built

    def key_of(self, ctx: CallContext) -> Any:
        """The hash key of the call, or ``None`` when it has none."""
        request = ctx.request
        if request is not None and self.header is not None:
            value = request.headers.get(self.header)
            if value is not None:
                return value
        key = self.key
        if key is None:
            return None
        if request is not None:
            return key(request)
        return key(*ctx.args, **ctx.kwargs)

    def pick(self, endpoints: Sequence[Endpoint], ctx: CallContext) -> Endpoint:
        key = self.key_of(ctx)
        if key is None:
            return endpoints[int(self._rng.random() * len(endpoints))]
        members = self._members
        # The service calls update() with all its endpoints, so the candidates are
        # members: two probes (not a scan) catch a ring used without update().
        if (len(endpoints) > len(members) or endpoints[0] not in members
                or endpoints[-1] not in members):
            self.update(endpoints)  # used without update(): ring over what we see
            members = self._members
        data = key if isinstance(key, bytes) else str(key).encode()
        points, owners = self._points, self._owners
        start = bisect.bisect_left(points, _hash(data))
        allowed: Any = members if len(endpoints) == len(members) else set(endpoints)
        cap: float | None = None  # the load bound, summed only when one is busy
        n = len(points)
        first: Endpoint | None = None
        for step in range(n):
            e = owners[(start + step) % n]
            if e in allowed:
                load = e.in_flight
                if load == 0:  # idle: under any bound (the bound is at least 1)
                    return e
                if cap is None:
                    cap = self._cap(endpoints)
                if load < cap:
                    return e
                if first is None:
                    first = e
        return first if first is not None else endpoints[0]

    def _cap(self, endpoints: Sequence[Endpoint]) -> float:
        """The most requests in flight a backend may carry and still be picked."""
        if self.load_factor == math.inf:
            return math.inf
        total = sum(e.in_flight for e in endpoints)
        return math.ceil(self.load_factor * (total + 1) / len(endpoints))

    def __repr__(self) -> str:
        return f"RingHash(header={self.header!r}, load_factor={self.load_factor!r})"


BALANCERS["ring_hash"] = RingHash
