"""Fixtures shared by the tests of this folder: telemetry receivers, and the browser of
the dashboard page tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _chromium import chromium
from _raw_http import read_request
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
    shutdown) are answered, 200 with an empty body (an export response with no
    partial failure), and waited for before the next test. (Refused, they were
    retried and logged "Transient error" lines into the next tests, which count the
    exporter's log lines; left to time out, they held each test up for 10-20 s.)"""
    before = set(threading.enumerate())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        telemetry._reset_for_tests()
        stuck = [thread for thread in set(threading.enumerate()) - before
                 if thread.name.startswith(("meshlite-telemetry", "OtelBatch", "OtelPeriodic"))]
        done = threading.Event()
        answering = threading.Thread(target=_answer_exports, args=(listener, done))
        answering.start()
        try:
            for thread in stuck:
                thread.join(15)
        finally:
            done.set()
            answering.join(5)


def _answer_exports(listener: socket.socket, done: threading.Event) -> None:
    # Answer each export waiting in the listener's backlog (and any new one) until done.
    listener.settimeout(0.05)
    while not done.is_set():
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        with connection:
            connection.settimeout(5)
            try:
                read_request(connection)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf"
                                   b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:  # the exporter gave up on it meanwhile
                pass

