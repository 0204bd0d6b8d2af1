"""Fixtures shared by the telemetry tests of this folder."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A loopback OTLP/HTTP receiver (a module may define its own ``receiver``)."""
    with OtlpReceiver() as r:
        yield r


@pytest.fixture
def stalled() -> Iterator[str]:
    """The base URL of a collector that takes connections and never answers (a
    listening socket nobody accepts on): each export waits out the exporter's
    timeout (10 s by default)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"

