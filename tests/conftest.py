from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator

import pytest
from _system import on_ci

from meshlite import telemetry
from meshlite.testing import FakeClock


@pytest.fixture(autouse=True)
def asyncio_loop_policy() -> Iterator[None]:
    """Each test starts on asyncio's own event loop policy: uvicorn 0.35 (the lowest
    supported version) installs uvloop's for the whole process when it sets up its
    loop in-process, and the tests that came after it in a worker ran on uvloop by the
    luck of their order (a test that wants uvloop sets it up itself)."""
    yield
    if type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop"):
        asyncio.set_event_loop_policy(None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads as often as CPython allows, so races show at once."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> pytest.TestReport:
    """Under CI (``CI=true``) a skipped test is a failed one: CI installs every program
    and library the suite uses (.ci/run), so a skip there hides a broken setup or a
    test that depends on the order tests run in."""
    report: pytest.TestReport = yield
    if report.skipped and on_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which requires every test to run: {reason}"
    return report


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
