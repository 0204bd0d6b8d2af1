"""Fixtures shared by the telemetry tests of this folder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from otlp_receiver import OtlpReceiver

from meshlite import telemetry


@pytest.fixture
def otel_env_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``OTEL_*`` variable of the environment the suite runs in leaks into a test."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def otel_isolated(otel_env_cleared: None) -> Iterator[None]:
    """A clean environment and meshlite's telemetry reset before and after the test."""
    telemetry._reset_for_tests()
    yield
    telemetry._reset_for_tests()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A loopback OTLP/HTTP receiver (a module may define its own ``receiver``)."""
    with OtlpReceiver() as r:
        yield r
