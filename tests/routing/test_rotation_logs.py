"""What rotation changes log: an ejection the ``max_ejection_percent`` cap skips, once per
backend while the rotation stays as it is, and panic mode on a service of many backends."""

from __future__ import annotations

import contextlib
import logging

import pytest

import meshlite as ml
from meshlite.mesh import Mesh
from meshlite.routing import Backend, OutlierDetection, Service
from meshlite.testing import FakeClock


def _down(backend: Backend) -> str:
    if backend.address in ("a", "b"):
        raise ConnectionError(f"{backend.address} is down")
    return backend.address


def _skip_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if getattr(r, "meshlite_event", None) == "EjectionSkipped"]


def test_a_skipped_ejection_is_logged_once_per_backend_until_rotation_changes(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    events: list[ml.Event] = []
    service = Service("users", ["a", "b", "c", "d"], balancer="round_robin",
                      pipeline=ml.Pipeline(), clock=clock,
                      outlier_detection=OutlierDetection(
                          consecutive_failures=1, max_ejection_percent=25,
                          base_ejection_seconds=10.0))
    service.add_hook(events.append)
    mesh = Mesh([service])
    caplog.set_level(logging.INFO, logger="meshlite")
    for _ in range(20):  # one of a, b ejected; the other fails on, skipped each time
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", _down)
    skips = [e for e in events if type(e).__name__ == "EjectionSkipped"]
    assert len(skips) >= 3  # hooks (and the metrics feed) get every skip
    lines = _skip_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    record = lines[0]
    assert record.levelno == logging.WARNING
    assert record.name == "meshlite.routing"
    assert record.service == "users"
    skipped = record.backend
    assert skipped in ("a", "b")
    assert {e.address for e in skips} == {skipped}  # (a, b: whichever failed second)
    message = record.getMessage()
    assert f"backend {skipped} stays in rotation" in message
    assert "max_ejection_percent" in message

    clock.advance(11.0)  # the ejection ends: the rotation changed, a skip is news again
    caplog.clear()
    for _ in range(20):
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", _down)
    assert len(_skip_lines(caplog)) == 1
    mesh.close()


def test_a_panic_line_names_five_backends_and_counts_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    # Fifty backends out at once: the line stays readable (log shippers cut lines of
    # several kilobytes); the event keeps every backend's reason.
    addresses = [f"b{i:02d}" for i in range(50)]
    events: list[ml.Event] = []
    service = Service("big", addresses, balancer="round_robin", pipeline=ml.Pipeline(),
                      outlier_detection=None)
    service.add_hook(events.append)
    caplog.set_level(logging.INFO, logger="meshlite")
    for address in addresses:
        service.eject(address)
    panic, = [e for e in events if type(e).__name__ == "PanicModeEntered"]
    assert len(panic.reasons) == 50
    line, = [r for r in caplog.records
             if getattr(r, "meshlite_event", None) == "PanicModeEntered"]
    message = line.getMessage()
    assert "b00: ejected by hand until restored" in message
    assert "b04:" in message
    assert "b05:" not in message
    assert message.endswith("; and 45 more)")
    assert len(message) < 400
