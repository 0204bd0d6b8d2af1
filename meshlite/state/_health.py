"""A store's health: down or up, the outage events, and the fallback counters.

Once an operation fails the store is *down*: for ``retry_interval`` seconds every
operation is refused at once (no network), then the next one tries again, and the
first one that succeeds announces the recovery. Checking costs one attribute
read while the store is up.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .._events import EventHooks
from .._statelog import announce
from ._base import StoreRecovered, StoreUnavailable, StoreUnavailableError

__all__ = ["Health"]


class Health:
    """Up/down state, outage events and fallback counters of one store.

    Attributes:
        down_since: ``time.monotonic()`` of the first failure of the current
            outage, or ``None`` while the store answers.
        hooks: Subscribers to :class:`StoreUnavailable` and :class:`StoreRecovered`.
        fallbacks: Decisions taken without the store, by ``(policy, action)``.
    """

    __slots__ = ("_counter", "_lock", "_retry_at", "down_since", "fallbacks", "hooks",
                 "label", "retry_interval")

    def __init__(self, label: str, retry_interval: float) -> None:
        self.label = label
        self.retry_interval = retry_interval
        self.hooks = EventHooks()
        self.fallbacks: dict[tuple[str, str], int] = {}
        self.down_since: float | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._counter: Any = None

    def refuse(self) -> None:
        """While down and before the retry instant, raise without trying the store.

        Raises:
            StoreUnavailableError: the store failed less than ``retry_interval`` ago.
        """
        if self.down_since is not None and time.monotonic() < self._retry_at:
            raise StoreUnavailableError(
                f"store {self.label} is unavailable (retrying in at most "
                f"{self.retry_interval:g} s)")

    def failed(self, error: BaseException) -> StoreUnavailableError:
        """Record a failed operation; returns the error to raise in its place."""
        now = time.monotonic()
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = now
            self._retry_at = now + self.retry_interval
        if first:
            announce(self.hooks, StoreUnavailable(policy="store", store=self.label, error=error))
        return StoreUnavailableError(
            f"store {self.label} did not answer: {type(error).__name__}: {error}")

    def recovered(self) -> None:
        """Record that an operation succeeded after an outage."""
        with self._lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            announce(self.hooks, StoreRecovered(policy="store", store=self.label,
                                           down_seconds=time.monotonic() - since))

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
