"""Waiting for the OpenTelemetry SDK's flush and shutdown, up to a timeout.

The SDK's ``force_flush`` and ``shutdown`` wait on the OTLP exporter, whose retries
against a collector that is down or stalled last tens of seconds whatever timeout
they are given (opentelemetry-python#4568). So each runs in a daemon thread that
the caller waits for up to its timeout, and the process does not wait for at exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SHUTDOWN_TIMEOUT_MILLIS", "OneAtATime", "bounded"]

SHUTDOWN_TIMEOUT_MILLIS = 5_000
"""How long a shutdown (and the flush at exit) waits for the last export by
default: well within a container's stop grace period (30 s in Kubernetes)."""

_THREAD_NAME = "meshlite-telemetry-flush"


class _Run(threading.Thread):
    """``action()`` in a daemon thread, its result kept once it returns."""

    def __init__(self, action: Callable[[], object]) -> None:
        super().__init__(daemon=True, name=_THREAD_NAME)
        self._action = action
        self.result: list[object] = []

    def run(self) -> None:
        self.result.append(self._action())


def bounded(action: Callable[[], object], timeout_millis: float) -> object:
    """``action()``'s result if it returns within ``timeout_millis``, else None (it
    goes on in a daemon thread, which the process does not wait for at exit)."""
    run = _Run(action)
    run.start()
    run.join(max(timeout_millis, 0) / 1000)
    return run.result[0] if run.result else None


class OneAtATime:
    """:func:`bounded` for an action called again and again (``force_flush``): while
    one run is still going (its exporter stuck on a stalled collector), a new call
    waits for it instead of starting another thread, so a caller flushing often
    against a black hole holds one thread, not one per call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: _Run | None = None

    def __call__(self, action: Callable[[], object], timeout_millis: float) -> object:
        """``action()``'s result if a run of it started by this call returns within
        ``timeout_millis``, else None. A run an earlier call started is waited for
        first: this call's own run starts once it is over (the earlier run may
        have begun before what this call is to flush was recorded)."""
        deadline = time.monotonic() + max(timeout_millis, 0) / 1000
        mine: _Run | None = None
        while True:
            with self._lock:
                running = self._running
                if running is None or not running.is_alive():
                    running = self._running = mine = _Run(action)
                    running.start()
            running.join(max(deadline - time.monotonic(), 0))
            if running is mine:
                return mine.result[0] if mine.result else None
            if time.monotonic() >= deadline:
                return None
