"""A store's health: down or up, the outage events, and the fallback counters.

One :class:`Health` per store, and on a Redis Cluster one more per primary (see
:mod:`._redis_nodes`): a primary that does not answer is down for the keys of its
slots only, while the others keep sharing. Only an unreachable store (or primary)
is *down* (a connection failure or a timeout; an error reply about one key affects
one decision, see :mod:`._redis`). While down every operation is refused at once,
without the network, except one *probe* at a time: the first operation after the
retry instant claims the probe by moving the retry instant on (so concurrent
callers keep falling back instead of all paying the timeout), and tries the store.
A failed probe sets the next retry instant with jittered backoff (redis-py's
``EqualJitterBackoff``: between half and all of ``retry_interval``), so replicas do
not probe in step; the first operation that succeeds announces the recovery.
Checking costs one attribute read while up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .._events import EventHooks
from .._fork import fork_safe
from .._statelog import announce
from ._base import StoreRecovered, StoreUnavailable, StoreUnavailableError

__all__ = ["Health"]


class Health:
    """Up/down state, outage events and fallback counters of one store (or of one
    primary of a Cluster store).

    Args:
        label: The store's name in messages and events.
        retry_interval: The longest pause between probes while down (seconds).
        backoff: An object with ``compute(failures) -> seconds`` (a redis-py backoff).
        probe_timeout: How long a claimed probe may take before another caller may
            probe (a probe whose caller was cancelled must not keep the store down).
        hooks: The store's subscribers, for a primary's health (default: new ones).
        node: The primary (``"host:port"``) this health is of, or ``None`` for the
            store's own.
        watch: Called with this health and whether it is down, at each change
            (under this health's lock: it must not call back).

    Attributes:
        down_since: ``time.monotonic()`` of the first failure of the current
            outage, or ``None`` while the store answers.
        hooks: Subscribers to :class:`StoreUnavailable` and :class:`StoreRecovered`.
        fallbacks: Decisions taken without the store, by ``(policy, action)``.
        probes: Probes sent while down (each one decision that tried the store).
        last_ok: ``time.monotonic()`` of the last reply (a timeout only marks down
            a store that answered nothing since the request was sent).
        reason: Why the store is down, in words, when its error does not say it
            (a Cluster that answers but serves no key), else ``""``.
    """

    __slots__ = ("_backoff", "_counter", "_failures", "_lock", "_probe_timeout", "_retry_at",
                 "_watch", "down_since", "fallbacks", "hooks", "label", "last_ok", "node",
                 "probes", "reason", "retry_interval")

    def __init__(self, label: str, retry_interval: float, backoff: Any,
                 probe_timeout: float, *, hooks: EventHooks | None = None,
                 node: str | None = None,
                 watch: Callable[[Health, bool], None] | None = None) -> None:
        self.label = label
        self.node = node
        self.retry_interval = retry_interval
        self.hooks = EventHooks() if hooks is None else hooks
        self.fallbacks: dict[tuple[str, str], int] = {}
        self.down_since: float | None = None
        self.probes = 0
        self.last_ok = 0.0
        self.reason = ""
        self._watch = watch
        self._backoff = backoff
        self._probe_timeout = probe_timeout
        self._failures = 0
        self._retry_at = 0.0
        self._lock = fork_safe(threading.Lock())
        self._counter: Any = None

    def refuse(self) -> None:
        """While down, raise at once, unless this caller claims the next probe.

        Raises:
            StoreUnavailableError: the store is down and this is not the probe.
        """
        now = time.monotonic()
        if now >= self._retry_at:
            with self._lock:
                if self.down_since is None:
                    return
                if now >= self._retry_at:
                    # This caller probes; the others keep falling back meanwhile.
                    self._retry_at = now + self._probe_timeout
                    self.probes += 1
                    return
        raise StoreUnavailableError(
            f"store {self.where} is unavailable (retrying in at most "
            f"{self.retry_interval:g} s)")

    @property
    def where(self) -> str:
        """The store's label, and the primary's address for a primary's health."""
        return self.label if self.node is None else f"{self.label} node {self.node}"

    def failed(self, error: BaseException, reason: str = "") -> StoreUnavailableError:
        """Record that the store could not be reached, or (``reason``) could not
        serve; returns the error to raise."""
        now = time.monotonic()
        with self._lock:
            first = self.down_since is None
            self.reason = reason  # the last failure's: it says what a probe asks
            if first:
                self.down_since = now
                self._failures = 0
            self._failures += 1
            self._retry_at = now + self._backoff.compute(self._failures)
            if first and self._watch is not None:
                self._watch(self, True)
        if first:
            announce(self.hooks, StoreUnavailable(policy="store", store=self.label,
                                                  error=error, node=self.node,
                                                  reason=reason))
        if reason:
            return StoreUnavailableError(f"store {self.where} {reason}")
        return StoreUnavailableError(
            f"store {self.where} did not answer: {type(error).__name__}: {error}")

    def recovered(self, reason: str = "") -> None:
        """Record that an operation reached the store after an outage (``reason``:
        how, when not by this node answering again)."""
        with self._lock:
            since, self.down_since = self.down_since, None
            self._retry_at = 0.0
            self.reason = ""
            if since is not None and self._watch is not None:
                self._watch(self, False)
        if since is not None:
            announce(self.hooks, StoreRecovered(
                policy="store", store=self.label, down_seconds=time.monotonic() - since,
                node=self.node, reason=reason))

    def note_fallback(self, policy: str, action: str) -> None:
        """Count one fallback, here and in the OpenTelemetry counter
        ``meshlite.store.fallbacks`` (attributes ``meshlite.policy`` and
        ``meshlite.store.action``; a no-op until an SDK is configured)."""
        key = (policy, action)
        with self._lock:
            self.fallbacks[key] = self.fallbacks.get(key, 0) + 1
            if self._counter is None:
                from opentelemetry import metrics

                self._counter = metrics.get_meter("meshlite").create_counter(
                    "meshlite.store.fallbacks", unit="{decision}",
                    description="Policy decisions taken without the shared store")
        self._counter.add(1, {"meshlite.policy": policy, "meshlite.store.action": action})
