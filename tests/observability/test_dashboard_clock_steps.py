"""The dashboard under a wall clock that steps (NTP correcting a drifted host, a VM
resumed from a snapshot): the wall clock only stamps what is shown; ``for_seconds``,
``resolve_seconds`` and a resolved alert's duration are measured on the mesh's
monotonic clock, and the per-second history moves with the step. The monitor ticks
as it does in production (``tick()`` with no arguments), its wall clock injected
and stepped, the mesh on a FakeClock."""

from __future__ import annotations

import contextlib
from typing import Any

import meshlite as ml
from meshlite.observability._dashboard import AlertFired, AlertResolved, AlertRule
from meshlite.observability._dashboard._monitor import Monitor
from meshlite.testing import FakeClock

T0 = 1_700_000_000.0
HOUR = 3600.0


class SteppedWall:
    """A wall clock that moves with the monotonic one, plus the steps it is given."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.offset = T0

    def __call__(self) -> float:
        return self.offset + self.clock.monotonic()

    def step(self, seconds: float) -> None:
        self.offset += seconds


def broken_mesh(clock: FakeClock) -> tuple[ml.Mesh, ml.CircuitBreaker, list[Any]]:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=2, open_seconds=HOUR,
                                name="db", clock=clock)
    users = ml.Service("users", ["a"], pipeline=ml.Pipeline(breaker), clock=clock,
                       outlier_detection=None)
    mesh = ml.Mesh([users], clock=clock)
    events: list[Any] = []
    mesh.add_hook(lambda e: events.append(e) if isinstance(
        e, AlertFired | AlertResolved) else None)

    def boom(backend: Any) -> None:
        raise ConnectionError("refused")

    for _ in range(2):
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", boom)
    assert breaker.state == "open"
    return mesh, breaker, events


def seconds(monitor: Monitor, clock: FakeClock, n: int) -> None:
    for _ in range(n):
        clock.advance(1.0)
        monitor.tick()


def test_a_wall_clock_step_forward_does_not_fire_an_alert_early(clock: FakeClock) -> None:
    mesh, _, events = broken_mesh(clock)
    mesh.alerts.add(AlertRule("open", "breaker_open", for_seconds=60))
    wall = SteppedWall(clock)
    monitor = Monitor(mesh, max_clients=1, wall=wall)
    monitor.tick()  # the condition starts holding
    seconds(monitor, clock, 5)
    wall.step(HOUR)  # the host's clock is put an hour forward
    seconds(monitor, clock, 50)
    assert events == []  # 55 s of an open breaker, whatever the wall clock says
    seconds(monitor, clock, 5)
    assert [type(e) for e in events] == [AlertFired]  # at 60 s, as asked
    (alert,) = mesh.alerts.firing()
    assert alert.started_at == wall()  # shown in wall time, the stepped one


def test_a_wall_clock_step_back_neither_holds_an_alert_back_nor_its_resolution(
        clock: FakeClock) -> None:
    mesh, breaker, events = broken_mesh(clock)
    mesh.alerts.add(AlertRule("open", "breaker_open", for_seconds=30, resolve_seconds=20))
    wall = SteppedWall(clock)
    monitor = Monitor(mesh, max_clients=1, wall=wall)
    monitor.tick()
    seconds(monitor, clock, 10)
    wall.step(-HOUR)  # put an hour back: the condition "began" in the future
    seconds(monitor, clock, 20)
    assert [type(e) for e in events] == [AlertFired]  # 30 s on the monotonic clock
    breaker.reset()
    seconds(monitor, clock, 5)
    wall.step(-HOUR)  # and back once more while it clears
    seconds(monitor, clock, 15)
    assert [type(e) for e in events] == [AlertFired]  # clear for 19 s (from the 1st tick)
    seconds(monitor, clock, 1)
    assert [type(e) for e in events] == [AlertFired, AlertResolved]  # clear for 20 s
    resolved = events[1]
    assert resolved.duration == 21.0  # fired 21 s, not the wall clock's -2 h
    assert mesh.alerts.firing() == []


def test_the_history_moves_with_a_stepped_wall_clock(clock: FakeClock) -> None:
    users = ml.Service("users", ["a"], pipeline=ml.Pipeline(), outlier_detection=None)
    mesh = ml.Mesh([users], clock=clock)
    wall = SteppedWall(clock)
    monitor = Monitor(mesh, max_clients=1, wall=wall, monotonic=clock.monotonic)

    def second_with_one_call() -> None:
        mesh.call_sync("users", lambda backend: "ok")
        clock.advance(1.0)
        monitor.tick()

    monitor.tick()
    for step in (-HOUR, 0.0, 2 * HOUR):
        wall.step(step)
        for _ in range(5):
            second_with_one_call()
    history = monitor.histories["users"]
    assert history.last == int(wall()) - 1  # the second that just ended, on the wall clock
    # One call a second, fifteen seconds in a row: neither an hour piled into one
    # second (the step back) nor a gap of an hour pushing the rest out (forward).
    assert history.columns(15)["requests"] == [1] * 15


def test_a_silence_lasts_its_seconds_whatever_the_wall_clock_does(clock: FakeClock) -> None:
    silences = ml.Mesh([], clock=clock).alerts.silences
    wall = SteppedWall(clock)
    silences.wall = wall
    muted = silences.add(seconds=600, service="users", comment="deploying")
    assert muted.ends_at == muted.starts_at + 600  # shown in wall time
    wall.step(-HOUR)  # would stretch a wall-clock mute by an hour: pages missed
    clock.advance(599)
    assert silences.active() == [muted]
    clock.advance(1)
    assert silences.active() == []
    muted = silences.add(seconds=600, service="users")
    wall.step(HOUR)  # would end a wall-clock mute at once
    assert silences.active() == [muted]
