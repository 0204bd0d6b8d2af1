"""Ejecting and restoring backends by hand: ``service.eject`` / ``service.restore``."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest

import meshlite as ml
from meshlite.routing import (
    Backend,
    BackendEjected,
    BackendReturned,
    OutlierDetection,
    PanicModeEntered,
    Service,
)
from meshlite.testing import FakeClock


def service_of(clock: FakeClock, backends: Any = ("a", "b", "c", "d"),
               **options: Any) -> tuple[Service, list[ml.Event]]:
    events: list[ml.Event] = []
    service = Service("s", backends, balancer="round_robin", pipeline=ml.Pipeline(),
                      clock=clock, **options)
    service.add_hook(events.append)
    return service, events


def seen(service: Service, n: int) -> list[str]:
    mesh = ml.Mesh([service])
    return [mesh.call_sync("s", lambda b: b.address) for _ in range(n)]


def status(service: Service) -> dict[str, str]:
    return {b.address: b.status for b in ml.Mesh([service]).health()["s"].backends}


def test_eject_holds_until_restored(clock: FakeClock) -> None:
    service, events = service_of(clock)
    service.eject("b")
    assert "b" not in seen(service, 9)
    clock.advance(1e6)  # no expiry: it holds until restored
    assert "b" not in seen(service, 9)
    ejected = events[0]
    assert isinstance(ejected, BackendEjected)
    assert (ejected.policy, ejected.reason, ejected.seconds) == ("routing", "manual", math.inf)
    assert service.out_reason(service.endpoints[1]) == "ejected by hand until restored"
    assert service.restore("b") is True
    assert "b" in seen(service, 4)
    returned = events[-1]
    assert isinstance(returned, BackendReturned)
    assert (returned.policy, returned.reason, returned.address) == ("routing", "manual", "b")
    assert status(service)["b"] == "up"


def test_timed_ejection_returns_by_itself(clock: FakeClock) -> None:
    service, events = service_of(clock)
    service.eject("c", seconds=5.0)
    assert "ejected by hand for 5 s more" in service.out_reason(service.endpoints[2])
    assert "c" not in seen(service, 6)
    clock.advance(5.0)
    assert "c" in seen(service, 4)
    returned = events[-1]
    assert isinstance(returned, BackendReturned)
    assert (returned.reason, returned.policy) == ("expired", "routing")
    assert service._manual == frozenset()


def test_cap_does_not_apply_but_manual_ejections_count_for_automatic_ones(
        clock: FakeClock) -> None:
    service, events = service_of(clock, ("a", "b"), outlier_detection=OutlierDetection(
        consecutive_failures=1, max_ejection_percent=50))
    service.eject("a")
    service.eject("b")  # beyond 50%: allowed by hand; panic mode routes to both
    assert {type(e) for e in events} >= {BackendEjected, PanicModeEntered}
    assert service.panic
    service.restore("b")
    mesh = ml.Mesh([service])

    def fail(backend: Backend) -> str:
        raise ConnectionError("down")

    with contextlib.suppress(ConnectionError):
        mesh.call_sync("s", fail)  # b fails once: the cap (a is out) keeps it in
    assert status(service) == {"a": "ejected", "b": "up"}
    assert type(events[-1]).__name__ == "EjectionSkipped"


def test_restore_ends_an_outlier_ejection_and_keeps_its_count(clock: FakeClock) -> None:
    service, events = service_of(clock, outlier_detection=OutlierDetection(
        consecutive_failures=1))
    service._eject(service.endpoints[0], "1 consecutive failures")
    assert status(service)["a"] == "ejected"
    assert service.restore("a") is True
    assert status(service)["a"] == "up"
    assert service.endpoints[0].ejections == 1
    assert service.restore("a") is False  # not ejected: nothing to do, no event
    assert sum(isinstance(e, BackendReturned) for e in events) == 1


def test_manual_ejection_is_not_overridden_by_outlier_detection(clock: FakeClock) -> None:
    service, _ = service_of(clock, outlier_detection=OutlierDetection(
        consecutive_failures=1, base_ejection_seconds=1.0))
    service.eject("a")
    service._eject(service.endpoints[0], "failures")  # already out: ignored
    clock.advance(10.0)
    assert status(service)["a"] == "ejected"
    assert service.endpoints[0].ejections == 0


def test_works_without_outlier_detection_and_snapshot_stays_json(clock: FakeClock) -> None:
    service, _ = service_of(clock, outlier_detection=None)
    service.eject("a")
    snap = ml.Mesh([service]).snapshot()["s"]
    row = snap.backends[0]
    assert (row.status, row.ejected_for, row.reason) == (
        "ejected", 0.0, "ejected by hand until restored")
    json.dumps(snap.as_dict(), allow_nan=False)  # no Infinity in what the dashboard sends


def test_ejecting_an_ejected_backend_replaces_the_ejection(clock: FakeClock) -> None:
    service, events = service_of(clock)
    service.eject("a", seconds=100.0)
    service.eject("a", seconds=1.0)
    clock.advance(1.0)
    assert status(service)["a"] == "up"
    assert [type(e).__name__ for e in events] == ["BackendEjected", "BackendEjected",
                                                  "BackendReturned"]


def test_set_backends_keeps_a_manual_ejection_of_a_kept_backend(clock: FakeClock) -> None:
    service, _ = service_of(clock)
    service.eject("a")
    service.set_backends(["a", "b"])
    assert status(service) == {"a": "ejected", "b": "up"}
    service.eject("b", seconds=1.0)
    assert len(service._manual) == 2
    service.set_backends(["b"])
    service.eject("b", seconds=1.0)
    assert [e.address for e in service._manual] == ["b"]  # "a" is no longer held


def test_unhealthy_backend_stays_out_after_restore(clock: FakeClock) -> None:
    service, _ = service_of(clock)
    endpoint = service.endpoints[0]
    service._set_health(endpoint, False, "503")
    service.eject("a")
    assert service.restore("a") is True
    assert status(service)["a"] == "unhealthy"


@pytest.mark.parametrize("seconds", [0, -1.0, math.inf, math.nan, "5", True])
def test_bad_seconds(clock: FakeClock, seconds: Any) -> None:
    service, events = service_of(clock)
    with pytest.raises(ml.ConfigError, match="seconds must be"):
        service.eject("a", seconds=seconds)
    assert events == []


def test_unknown_address_lists_the_backends(clock: FakeClock) -> None:
    service, _ = service_of(clock, ("a", "b"))
    with pytest.raises(ml.ConfigError, match=r"no backend 'z' \(backends: a, b\)") as info:
        service.eject("z")
    assert info.value.service == "s"
    with pytest.raises(ml.ConfigError, match="no backend 'z'"):
        service.restore("z")


async def test_async_calls_avoid_a_manually_ejected_backend(clock: FakeClock) -> None:
    service, _ = service_of(clock, ("a", "b"))
    mesh = ml.Mesh([service])
    service.eject("a")

    async def call(backend: Backend) -> str:
        return backend.address

    assert {await mesh.call("s", call) for _ in range(4)} == {"b"}
