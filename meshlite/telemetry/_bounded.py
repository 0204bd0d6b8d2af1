"""Waiting for the OpenTelemetry SDK's flush and shutdown, up to a timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["SHUTDOWN_TIMEOUT_MILLIS", "bounded"]

SHUTDOWN_TIMEOUT_MILLIS = 5_000
"""How long a shutdown (and the flush at exit) waits for the last export by
default: well within a container's stop grace period (30 s in Kubernetes)."""


def bounded(action: Callable[[], object], timeout_millis: float) -> object:
    """``action()``'s result if it returns within ``timeout_millis``, else None (it
    goes on in a daemon thread, which the process does not wait for at exit).

    The SDK's ``force_flush`` and ``shutdown`` wait on the OTLP exporter, whose
    retries against a collector that is down or stalled last tens of seconds
    whatever timeout they are given (opentelemetry-python#4568).
    """
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(action()), daemon=True,
                              name="meshlite-telemetry-flush")
    worker.start()
    worker.join(max(timeout_millis, 0) / 1000)
    return result[0] if result else None
