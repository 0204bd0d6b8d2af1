"""Outlier detection: ejection, return by itself, growing ejections, caps, panic mode."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

import meshlite as ml
from meshlite.mesh import Mesh
from meshlite.routing import Backend, OutlierDetection, Service
from meshlite.testing import FakeClock


class Flaky:
    """A call function whose backends fail while listed in ``down``."""

    def __init__(self, *down: str) -> None:
        self.down = set(down)
        self.seen: list[str] = []

    def __call__(self, backend: Backend) -> str:
        self.seen.append(backend.address)
        if backend.address in self.down:
            raise ConnectionError(f"{backend.address} is down")
        return backend.address


def mesh_of(clock: FakeClock, backends: Any = ("a", "b", "c", "d"), **outlier: Any
            ) -> tuple[Mesh, list[ml.Event]]:
    events: list[ml.Event] = []
    service = Service("s", backends, balancer="round_robin", pipeline=ml.Pipeline(),
                      outlier_detection=OutlierDetection(**outlier), clock=clock)
    service.add_hook(events.append)
    return Mesh([service]), events


def drive(mesh: Mesh, fn: Flaky, n: int) -> None:
    for _ in range(n):
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("s", fn)


def status(mesh: Mesh) -> dict[str, str]:
    return {b.address: b.status for b in mesh.health()["s"].backends}


def test_consecutive_failures_eject_and_the_backend_returns(clock: FakeClock) -> None:
    mesh, events = mesh_of(clock, consecutive_failures=3, base_ejection_seconds=10.0)
    fn = Flaky("b")
    drive(mesh, fn, 12)  # b sees 3 attempts and is ejected at its third failure
    assert fn.seen.count("b") == 3
    assert status(mesh)["b"] == "ejected"
    ejected = events[0]
    assert type(ejected).__name__ == "BackendEjected"
    assert ejected.seconds == 10.0  # type: ignore[attr-defined]
    assert "3 consecutive failures" in ejected.reason  # type: ignore[attr-defined]
    fn.seen.clear()
    drive(mesh, fn, 9)
    assert "b" not in fn.seen
    clock.advance(10.0)
    fn.down.clear()
    drive(mesh, fn, 4)
    assert "b" in fn.seen
    assert type(events[-1]).__name__ == "BackendReturned"
    assert status(mesh)["b"] == "up"


def test_successes_reset_the_consecutive_count(clock: FakeClock) -> None:
    mesh, _ = mesh_of(clock, ("a",), consecutive_failures=2)
    fn = Flaky()
    for _ in range(5):
        fn.down = {"a"}
        drive(mesh, fn, 1)
        fn.down = set()
        drive(mesh, fn, 1)
    assert status(mesh) == {"a": "up"}


def test_each_ejection_lasts_longer_up_to_the_cap(clock: FakeClock) -> None:
    mesh, events = mesh_of(clock, ("a", "b"), consecutive_failures=1,
                           base_ejection_seconds=10.0, max_ejection_seconds=25.0)
    fn = Flaky("a")
    lengths = []
    for _ in range(3):
        drive(mesh, fn, 2)
        lengths.append(events[-1].seconds)  # type: ignore[attr-defined]
        assert status(mesh)["a"] == "ejected"
        clock.advance(lengths[-1])
    assert lengths == [10.0, 20.0, 25.0]


def test_time_back_in_rotation_forgives_ejections(clock: FakeClock) -> None:
    mesh, events = mesh_of(clock, ("a", "b"), consecutive_failures=1,
                           base_ejection_seconds=10.0)
    fn = Flaky("a")
    drive(mesh, fn, 2)
    clock.advance(10.0)
    status(mesh)  # returns
    clock.advance(100.0)  # well-behaved for ten base periods
    drive(mesh, fn, 2)
    assert [e.seconds for e in events if hasattr(e, "seconds")] == [10.0, 10.0]


def test_the_count_stops_growing_at_the_cap(clock: FakeClock) -> None:
    # Ejected 20 times in a long outage, its ejections at the 25 s cap from the
    # third, where its count stops: two base periods back in rotation forgive two,
    # and the next ejection is a second one (20 s), not the cap again.
    mesh, events = mesh_of(clock, ("a", "b"), consecutive_failures=1,
                           base_ejection_seconds=10.0, max_ejection_seconds=25.0)
    fn = Flaky("a")
    for _ in range(20):
        drive(mesh, fn, 2)
        clock.advance(events[-1].seconds)  # type: ignore[attr-defined]
    assert {b.address: b.ejections for b in mesh.snapshot()["s"].backends}["a"] == 3
    status(mesh)  # returns
    clock.advance(20.0)
    drive(mesh, fn, 2)
    assert events[-1].seconds == 20.0  # type: ignore[attr-defined]


def test_a_quiet_services_time_back_counts_from_the_ejections_end(clock: FakeClock) -> None:
    # No call notices the return at the ejection's end: the backend was back in
    # rotation from then all the same.
    mesh, events = mesh_of(clock, ("a", "b"), consecutive_failures=1,
                           base_ejection_seconds=10.0)
    fn = Flaky("a")
    drive(mesh, fn, 2)  # ejected until t=10
    clock.advance(60.0)  # no call at all: back in rotation for 50 s, 5 base periods
    drive(mesh, fn, 2)
    assert [e.seconds for e in events if hasattr(e, "seconds")] == [10.0, 10.0]


def test_max_ejection_percent_caps_ejections(clock: FakeClock) -> None:
    mesh, events = mesh_of(clock, consecutive_failures=1, max_ejection_percent=50)
    fn = Flaky("a", "b", "c")
    drive(mesh, fn, 12)
    assert sorted(status(mesh).values()) == ["ejected", "ejected", "up", "up"]
    assert any(type(e).__name__ == "EjectionSkipped" for e in events)


@pytest.mark.parametrize(("backends", "percent", "ejected"), [
    (("a",), 50, 0), (("a",), 100, 1), (("a", "b", "c"), 30, 0), (("a", "b", "c"), 34, 1),
    (("a", "b"), 0, 0),
])
def test_the_percentage_is_never_exceeded(clock: FakeClock, backends: tuple[str, ...],
                                          percent: float, ejected: int) -> None:
    mesh, _ = mesh_of(clock, backends, consecutive_failures=1, max_ejection_percent=percent)
    drive(mesh, Flaky(*backends), 6)
    assert list(status(mesh).values()).count("ejected") == ejected


def test_failure_rate_ejects(clock: FakeClock) -> None:
    mesh, events = mesh_of(clock, ("a", "b"), consecutive_failures=None, failure_rate=0.5,
                           failure_rate_window=4)
    attempts_on_a = 0

    def alternating(backend: Backend) -> None:
        nonlocal attempts_on_a
        if backend.address == "a":
            attempts_on_a += 1
            if attempts_on_a % 2 == 0:  # never two failures in a row
                raise ConnectionError("a fails every other time")

    for _ in range(6):
        assert status(mesh)["a"] == "up"
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("s", alternating)
    assert attempts_on_a == 3  # 1 failure out of 3: the window is not full yet
    for _ in range(2):
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("s", alternating)
    assert attempts_on_a == 4  # 2 failures out of 4: 50%
    assert status(mesh)["a"] == "ejected"
    assert "failure rate 50%" in events[0].reason  # type: ignore[attr-defined]


def test_failure_on_filters_what_counts(clock: FakeClock) -> None:
    mesh, _ = mesh_of(clock, ("a", "b"), consecutive_failures=1, failure_on=TimeoutError)
    drive(mesh, Flaky("a"), 4)
    assert status(mesh)["a"] == "up"


def test_rejections_never_count(clock: FakeClock) -> None:
    mesh, _ = mesh_of(clock, ("a", "b"), consecutive_failures=1)

    def rejected(backend: Backend) -> None:
        raise ml.RateLimitedError("local limit")

    for _ in range(4):
        with pytest.raises(ml.RateLimitedError):
            mesh.call_sync("s", rejected)
    assert set(status(mesh).values()) == {"up"}


def test_panic_mode_routes_to_all_when_all_are_out(clock: FakeClock) -> None:
    mesh, events = mesh_of(clock, ("a", "b"), consecutive_failures=1,
                           max_ejection_percent=100, base_ejection_seconds=5.0)
    fn = Flaky("a", "b")
    drive(mesh, fn, 2)
    assert mesh.health()["s"].status == "panic"
    names = [type(e).__name__ for e in events]
    assert names == ["BackendEjected", "BackendEjected", "PanicModeEntered"]
    panic = events[-1]
    assert panic.backends == 2  # type: ignore[attr-defined]
    assert all("ejected" in r for r in panic.reasons)  # type: ignore[attr-defined]
    fn.down.clear()
    fn.seen.clear()
    drive(mesh, fn, 4)  # still calls, to every backend
    assert sorted(set(fn.seen)) == ["a", "b"]
    clock.advance(5.0)
    assert mesh.health()["s"].status == "healthy"
    assert type(events[-1]).__name__ == "PanicModeExited"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"consecutive_failures": 0}, "consecutive_failures"),
    ({"failure_rate": 1.5}, "failure_rate"),
    ({"base_ejection_seconds": 0}, "base_ejection_seconds"),
    ({"max_ejection_percent": 101}, "max_ejection_percent"),
    ({"max_ejection_percent": True}, "max_ejection_percent"),
    ({"failure_rate_window": 0}, "failure_rate_window"),
    ({"base_ejection_seconds": 60.0, "max_ejection_seconds": 30.0}, "max_ejection_seconds"),
    ({"failure_on": 3}, "failure_on"),
    ({"clock": 3}, "clock"),
])
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"OutlierDetection: {field}"):
        OutlierDetection(**kwargs)
