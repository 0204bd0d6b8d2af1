"""Batch mode of the shared circuit breaker: closed-circuit outcomes sent together.

With ``RedisStore(circuit_batch=seconds)``, a process queues the outcomes of calls
admitted on a closed circuit and sends them in one script (up to ``MAX_BATCH``
outcomes), by the first outcome recorded ``circuit_batch`` seconds after the oldest
queued one, or as soon as the queue is full. The circuit then opens up to that
much later, and outcomes still queued when a process exits are lost. Half-open
trial outcomes are never batched: :class:`~._redis_circuit.RedisCircuit` sends them
at once. A forked child starts with an empty queue (the parent's outcomes are the
parent's to send).
"""

from __future__ import annotations

import threading
import time

from .._fork import after_fork_in_child

__all__ = ["MAX_BATCH", "OutcomeBatch"]

MAX_BATCH = 64
"""Outcomes one batch carries at most."""


class OutcomeBatch:
    """The closed-circuit outcomes one process has queued for one shared breaker.

    Args:
        seconds: How long the oldest queued outcome may wait (``circuit_batch``, > 0).
    """

    __slots__ = ("__weakref__", "_flush_at", "_lock", "_pending", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._pending: list[int] = []  # (permit, failed, slow) triples, flattened
        self._flush_at = 0.0
        self._lock = threading.Lock()
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: the outcomes the parent queued are the parent's to send
        (sent by every child too, each would count once per process)."""
        self._pending = []
        self._lock = threading.Lock()

    def add(self, permit: int, failed: bool, slow: bool) -> tuple[int, ...] | None:
        """Queue an outcome; the batch to send (flattened triples) once one is due,
        else ``None``."""
        now = time.monotonic()
        with self._lock:
            if not self._pending:
                self._flush_at = now + self._seconds
            self._pending += (permit, int(failed), int(slow))
            if now < self._flush_at and len(self._pending) < 3 * MAX_BATCH:
                return None
            batch, self._pending = self._pending, []
        return tuple(batch)
