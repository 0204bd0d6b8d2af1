"""State changes are logged once each on the ``meshlite`` loggers, with their fields
in ``extra``; per-call events are not logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite._audit import config_sha256
from meshlite._events import RetryScheduled
from meshlite._statelog import LOGGERS, log_state_change
from meshlite.routing import Backend
from meshlite.state._base import StoreRecovered, StoreUnavailable

CONFIG = """
services:
  users:
    backends: ["http://127.0.0.1:81", "http://127.0.0.2:81", "http://127.0.0.3:81"]
    balancer: round_robin
    retry: false
    outlier_detection: {{consecutive_failures: 3, base_ejection_seconds: 60,
                        max_ejection_percent: 50}}
  orders:
    backends: ["http://127.0.0.1:82"]
    retry: false
    circuit_breaker: {{failure_rate: 0.5, window: 4, min_calls: 4, open_seconds: {open},
                      half_open_calls: 1}}
"""

BAD = "services:\n  users:\n    backends: []\n    timeout: -1\n"


class Calls:
    """A mesh.call function whose listed backends fail."""

    def __init__(self, *down: str) -> None:
        self.down = set(down)

    def __call__(self, backend: Backend) -> str:
        if backend.address in self.down:
            raise ConnectionError(f"{backend.address} refused")
        return backend.address


async def drive(mesh: ml.Mesh, service: str, fn: Calls, n: int) -> None:
    for _ in range(n):
        with contextlib.suppress(ConnectionError, ml.CircuitOpenError):
            await mesh.call(service, fn)


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "meshlite_event")]


def of(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in records(caplog) if r.meshlite_event == kind]


async def test_a_scenario_logs_each_change_once_with_its_fields(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG.format(open=0.2), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path))
    caplog.set_level(logging.INFO, logger="meshlite")
    async with mesh:
        # users: one backend fails until ejected, then is restored by hand
        await drive(mesh, "users", Calls("http://127.0.0.2:81"), 30)
        assert mesh.service("users").restore("http://127.0.0.2:81") is True
        # orders: four failures open the breaker; later calls are refused (not logged)
        await drive(mesh, "orders", Calls("http://127.0.0.1:82"), 20)
        await asyncio.sleep(0.25)
        await drive(mesh, "orders", Calls(), 3)  # half-open, one trial succeeds, closed
        path.write_text(CONFIG.format(open=5), encoding="utf-8")
        assert await mesh.reload() is True
        path.write_text(BAD, encoding="utf-8")
        assert await mesh.reload() is False

    ejected = of(caplog, "BackendEjected")
    assert len(ejected) == 1
    e = ejected[0]
    assert (e.name, e.levelno) == ("meshlite.routing", logging.WARNING)
    assert (e.service, e.backend, e.seconds, e.policy) == (
        "users", "http://127.0.0.2:81", 60.0, "outlier_detection")
    assert "3 consecutive failures" in e.reason
    returned = of(caplog, "BackendReturned")
    assert [(r.service, r.backend, r.reason, r.levelno) for r in returned] == [
        ("users", "http://127.0.0.2:81", "manual", logging.INFO)]

    opened = of(caplog, "CircuitOpened")
    assert len(opened) == 1
    assert (opened[0].name, opened[0].levelno) == ("meshlite.breaker", logging.WARNING)
    assert (opened[0].service, opened[0].breaker, opened[0].previous, opened[0].state) == (
        "orders", "orders", "closed", "open")
    assert opened[0].open_seconds == 0.2
    assert opened[0].reason
    assert [(r.previous, r.state) for r in of(caplog, "CircuitHalfOpened")] == [
        ("open", "half_open")]
    assert [(r.previous, r.state) for r in of(caplog, "CircuitClosed")] == [
        ("half_open", "closed")]

    reloaded = of(caplog, "ConfigReloaded")
    assert [(r.name, r.levelno, r.version, r.changed, r.path) for r in reloaded] == [
        ("meshlite.config", logging.INFO, 1, ("orders",), str(path))]
    rejected = of(caplog, "ConfigReloadFailed")
    assert len(rejected) == 1
    assert rejected[0].levelno == logging.ERROR
    assert any("timeout" in error for error in rejected[0].errors)
    # Which process applied or refused it (each worker of a server reloads on its own).
    assert [r.pid for r in reloaded + rejected] == [os.getpid()] * 2
    # ... and which text: the SHA-256 of the file applied (versions count per process)
    applied = config_sha256(CONFIG.format(open=5))
    assert reloaded[0].sha256 == applied
    assert (f"applied by pid {os.getpid()} (version 1, sha256 {applied[:12]})"
            in reloaded[0].getMessage())
    assert f"rejected by pid {os.getpid()}, the previous" in rejected[0].getMessage()
    # Nothing else: no per-call record (retries, rejections), no duplicate.
    assert {r.meshlite_event for r in records(caplog)} == {
        "BackendEjected", "BackendReturned", "CircuitOpened", "CircuitHalfOpened",
        "CircuitClosed", "ConfigReloaded", "ConfigReloadFailed"}
    assert all(r.name in LOGGERS for r in records(caplog))
    config_lines = [r for r in caplog.records if r.name == "meshlite.config"]
    assert len(config_lines) == 2  # the reload is not logged a second time elsewhere


def test_a_standalone_breaker_logs_without_any_hook(caplog: pytest.LogCaptureFixture) -> None:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=2, open_seconds=30,
                                name="payments")
    pipeline = ml.Pipeline(breaker)
    caplog.set_level(logging.INFO, logger="meshlite")

    def boom() -> None:
        raise ValueError("down")

    for _ in range(5):
        with contextlib.suppress(ValueError, ml.CircuitOpenError):
            pipeline.call(boom)
    opened = of(caplog, "CircuitOpened")
    assert [(r.breaker, r.state, r.service) for r in opened] == [("payments", "open", None)]
    assert len(records(caplog)) == 1


@pytest.mark.parametrize(("event", "logger", "level", "fields"), [
    (StoreUnavailable(policy="store", store="redis://127.0.0.1:6399/0",
                      error=ConnectionError("refused")),
     "meshlite.state", logging.WARNING,
     {"store": "redis://127.0.0.1:6399/0", "reason": "ConnectionError: refused"}),
    (StoreRecovered(policy="store", store="redis://127.0.0.1:6399/0", down_seconds=2.5),
     "meshlite.state", logging.INFO, {"down_seconds": 2.5}),
    (StoreUnavailable(policy="store", store="redis+cluster://127.0.0.1:7000",
                      error=TimeoutError("no reply"), node="127.0.0.1:7001"),
     "meshlite.state", logging.WARNING,
     {"node": "127.0.0.1:7001", "reason": "TimeoutError: no reply"}),
    (StoreRecovered(policy="store", store="redis+cluster://127.0.0.1:7000", down_seconds=2.5,
                    node="127.0.0.1:7001", reason="its slots are served by 127.0.0.1:7004 now"),
     "meshlite.state", logging.INFO,
     {"node": "127.0.0.1:7001", "reason": "its slots are served by 127.0.0.1:7004 now"}),
])
def test_store_outages_are_logged(caplog: pytest.LogCaptureFixture, event: Any, logger: str,
                                  level: int, fields: dict[str, Any]) -> None:
    caplog.set_level(logging.INFO, logger="meshlite")
    log_state_change(event)
    (record,) = records(caplog)
    assert (record.name, record.levelno) == (logger, level)
    assert {k: getattr(record, k) for k in fields} == fields
    if event.node is not None:  # a Cluster primary: the line says whose keys are affected
        assert f"node {event.node}" in record.getMessage()
        assert "slots" in record.getMessage()


def test_alerts_log_at_their_severity(caplog: pytest.LogCaptureFixture) -> None:
    from meshlite.observability._dashboard._rules import AlertFired, AlertResolved

    caplog.set_level(logging.INFO, logger="meshlite")
    common: dict[str, Any] = {"policy": "alerts", "service": "users", "rule": "errors",
                              "condition": "error_rate", "value": 0.5, "summary": "users: x"}
    log_state_change(AlertFired(severity="critical", threshold=0.1, **common))
    log_state_change(AlertResolved(severity="critical", duration=3.0, **common))
    fired, resolved = records(caplog)
    assert (fired.name, fired.levelno, fired.rule, fired.service) == (
        "meshlite.alerts", logging.ERROR, "errors", "users")
    assert (resolved.levelno, resolved.duration) == (logging.INFO, 3.0)


def test_per_call_events_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="meshlite")
    log_state_change(RetryScheduled(policy="retry", attempt=1, delay=0.1))
    assert records(caplog) == []


_OPEN_A_BREAKER = """
import meshlite as ml

breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=2, open_seconds=30,
                            name="payments")
for _ in range(2):
    try:
        ml.Pipeline(breaker).call(lambda: 1 / 0)
    except ZeroDivisionError:
        pass
breaker.reset()  # closed again: INFO
"""


def _stderr_of(script: str, tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stderr


def test_without_logging_configured_warnings_print_bare_and_info_is_dropped(
        tmp_path: Path) -> None:
    # docs/logging.md: Python's last-resort handler, as under uvicorn's own config.
    assert _stderr_of(_OPEN_A_BREAKER, tmp_path).splitlines() == [
        "circuit 'payments' opened (2 of 2 calls failed); calls are rejected for 30 s"]


def test_the_documented_uvicorn_log_config_shows_meshlite_lines_info_included(
        tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    page = (Path(__file__).parent.parent / "docs" / "logging.md").read_text()
    block = re.search(r"```yaml\n(# log.yaml.*?)```", page, re.S)
    assert block is not None, "docs/logging.md lost its uvicorn log config"
    (tmp_path / "log.yaml").write_text(block.group(1))
    setup = ("import logging.config, yaml\n"
             "logging.config.dictConfig(yaml.safe_load(open('log.yaml')))\n")
    lines = _stderr_of(setup + _OPEN_A_BREAKER, tmp_path).splitlines()
    assert [line.split()[:3:2] for line in lines] == [["WARNING:", "meshlite.breaker:"],
                                                     ["INFO:", "meshlite.breaker:"]]
    assert all(re.fullmatch(r"\[\d+\]", line.split()[1]) for line in lines)  # the worker
