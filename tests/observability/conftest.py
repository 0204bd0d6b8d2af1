"""Fixtures shared by the tests of this folder: telemetry receivers, and the browser of
the dashboard page tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _chromium import chromium
from otlp_receiver import OtlpReceiver

from meshlite import telemetry


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (``playwright.async_api.Browser``) for the dashboard page
    tests, which skip or fail first where playwright is missing (``no_playwright``)."""
    async with chromium() as b:
        yield b


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A loopback OTLP/HTTP receiver (a module may define its own ``receiver``).

    The test's telemetry is shut down before the receiver stops: spans still queued
    then go to a receiver that answers. (Shut down after it, they met a closed port,
    and the exporter's thread, left retrying by the bounded shutdown, logged its
    "Transient error" into the next test, which counts the exporter's log lines.)
    """
    with OtlpReceiver() as r:
        yield r
        telemetry._reset_for_tests()


@pytest.fixture
def stalled() -> Iterator[str]:
    """The base URL of a collector that takes connections and never answers (a
    listening socket nobody accepts on): each export waits out the exporter's
    timeout (10 s by default).

    The exports the test leaves stuck there (abandoned by a bounded flush or
    shutdown) are waited for before the next test, the listener still open. (Closed
    first, it refused their retries, which logged "Transient error" lines into the
    next tests, and those count the exporter's log lines.)"""
    before = set(threading.enumerate())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        telemetry._reset_for_tests()
        for thread in set(threading.enumerate()) - before:
            if thread.name.startswith(("meshlite-telemetry", "OtelBatch", "OtelPeriodic")):
                thread.join(15)

