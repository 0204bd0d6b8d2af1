"""Alerts that do not flap: the hold-down (``for_seconds``), the resolve delay
(``resolve_seconds``), one notification per service, and silences (by code and
through the admin API). Driven by ``Monitor.tick(now)`` on a FakeClock: nothing
sleeps."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.observability._dashboard import AlertFired, AlertResolved, AlertRule
from meshlite.observability._dashboard._monitor import Monitor
from meshlite.testing import FakeClock

T0 = 1_700_000_000.0
TOKEN = "admin-token-for-tests-0123456789"


def flapping_mesh(clock: FakeClock) -> tuple[ml.Mesh, ml.CircuitBreaker]:
    """users: a breaker that opens for 5 s."""
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=2, open_seconds=5,
                                half_open_calls=1, name="db", clock=clock)
    users = ml.Service("users", ["a"], pipeline=ml.Pipeline(breaker), clock=clock,
                       outlier_detection=None)
    return ml.Mesh([users], clock=clock), breaker


def fail(mesh: ml.Mesh, n: int = 1) -> None:
    def boom(backend: Any) -> None:
        raise ConnectionError("refused")

    for _ in range(n):
        with contextlib.suppress(ConnectionError, ml.CircuitOpenError):
            mesh.call_sync("users", boom)


def run_outage(rule: AlertRule, clock: FakeClock, *, seconds: int = 30,
               quiet: int = 12) -> tuple[list[str], Monitor]:
    """The breaker cycles open (5 s) -> half-open (seen by one tick) -> open for
    ``seconds`` (each trial fails), then recovers and stays closed for ``quiet``
    seconds. Returns the alert events, in order, as ``"fired@t"`` /
    ``"resolved@t"``."""
    mesh, breaker = flapping_mesh(clock)
    events: list[str] = []

    def hook(event: ml.Event) -> None:
        if isinstance(event, AlertFired | AlertResolved):
            kind = "fired" if isinstance(event, AlertFired) else "resolved"
            events.append(f"{kind}@{int(clock.monotonic())}")

    mesh.add_hook(hook)
    mesh.alerts.add(rule)
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    fail(mesh, 2)  # opens at t=0
    for t in range(1, seconds + quiet + 1):
        clock.advance(1.0)
        if t == seconds:
            breaker.reset()
        monitor.tick(T0 + t)
        if t < seconds and breaker.state == "half_open":
            fail(mesh)  # the trial fails: open again
    return events, monitor


def test_without_a_resolve_delay_every_breaker_cycle_fires_again(clock: FakeClock) -> None:
    events, _ = run_outage(AlertRule("breaker", "breaker_open"), clock)
    assert events[:4] == ["fired@1", "resolved@5", "fired@6", "resolved@10"]
    assert len([e for e in events if e.startswith("fired")]) == 6  # one per cycle


def test_hold_down_and_resolve_delay_make_one_alert_per_outage(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    rule = AlertRule("breaker", "breaker_open", for_seconds=3, resolve_seconds=8)
    caplog.set_level(logging.INFO, logger="meshlite.alerts")
    events, monitor = run_outage(rule, clock)
    # open from t=1, held 3 s: fires at 4; each half-open second is shorter than
    # the resolve delay; closed from t=30: resolves 8 s later
    assert events == ["fired@4", "resolved@38"]
    logged = [(r.meshlite_event, r.service, r.rule, r.levelno) for r in caplog.records
              if r.name == "meshlite.alerts"]
    assert logged == [("AlertFired", "users", "breaker", logging.WARNING),
                      ("AlertResolved", "users", "breaker", logging.INFO)]
    assert monitor.mesh.alerts.firing() == []
    [resolved] = monitor.mesh.alerts.recent()
    assert resolved.state == "resolved"


def test_the_hold_down_suppresses_a_short_blip(clock: FakeClock) -> None:
    rule = AlertRule("breaker", "breaker_open", for_seconds=10, resolve_seconds=5)
    events, _ = run_outage(rule, clock, seconds=4)
    assert events == []


def test_hold_down_needs_the_condition_continuously(clock: FakeClock) -> None:
    mesh, breaker = flapping_mesh(clock)
    mesh.alerts.add(AlertRule("breaker", "breaker_open", for_seconds=3))
    monitor = Monitor(mesh, max_clients=1)
    for t in range(10):  # forced open on even seconds, closed on odd ones
        breaker.force_open() if t % 2 == 0 else breaker.reset()
        monitor.tick(T0 + t)
    assert mesh.alerts.firing() == []
    for t in range(10, 14):
        breaker.force_open()
        monitor.tick(T0 + t)
    [alert] = mesh.alerts.firing()
    assert alert.started_at == T0 + 13  # held at 10, 11, 12, 13: 3 s after 10


# -- notifications ---------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server that records the JSON bodies POSTed to it."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def empty_mesh(clock: FakeClock) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [], clock=clock),
                    ml.Service("orders", [], clock=clock)], clock=clock)


async def test_one_notification_per_service_groups_its_alerts(
        clock: FakeClock, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    mesh = empty_mesh(clock)
    mesh.alerts.replace([AlertRule("nobackend", "no_healthy_backend", severity="critical"),
                         AlertRule("nobackend-info", "no_healthy_backend", severity="info")],
                        webhook=url)
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)  # four alerts fire: two per service
    mesh.service("users").set_backends(["a"])
    monitor.tick(T0 + 1)  # users' two resolve
    await monitor.stop()
    summary = [(g["service"], g["status"], sorted(a["rule"] for a in g["alerts"]))
               for g in got]
    assert summary == [
        ("users", "firing", ["nobackend", "nobackend-info"]),
        ("orders", "firing", ["nobackend", "nobackend-info"]),
        ("users", "resolved", ["nobackend", "nobackend-info"])]
    assert got[0]["alert"] == got[0]["alerts"][0]


async def test_a_silence_mutes_notifications_but_not_the_alert(
        clock: FakeClock, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    mesh = empty_mesh(clock)
    mesh.alerts.replace([AlertRule("nobackend", "no_healthy_backend")], webhook=url)
    silence = mesh.alerts.silences.add(service="users", seconds=60, comment="deploying")
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    await monitor.stop()
    assert [g["service"] for g in got] == ["orders"]
    state = mesh.alerts.as_dict()
    assert {(a["service"], a["silenced"]) for a in state["firing"]} == {
        ("users", True), ("orders", False)}
    assert state["silences"] == [silence.as_dict()]
    clock.advance(59)
    assert mesh.alerts.silences.active() == [silence]
    clock.advance(1)  # the silence ended by itself, on the mesh's clock
    assert mesh.alerts.silences.active() == []


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"seconds": 0}, "seconds"), ({"seconds": 8 * 86400}, "seconds"),
    ({"seconds": 60, "service": ""}, "service"), ({"seconds": 60, "comment": 3}, "comment"),
])
def test_bad_silences_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=field):
        ml.Mesh([]).alerts.silences.add(**kwargs)


def test_resolve_seconds_is_validated() -> None:
    with pytest.raises(ml.ConfigError, match="resolve_seconds"):
        AlertRule("r", "breaker_open", resolve_seconds=-1)


async def test_admin_api_adds_lists_and_expires_silences() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"])])
    server = await mesh.serve_dashboard(port=0, admin_token=TOKEN)
    try:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, headers={
                "Authorization": f"Bearer {TOKEN}"}) as http:
            r = await http.post("/api/admin/silences", params={
                "service": "users", "rule": "errors", "seconds": "600", "comment": "deploy"})
            assert r.status_code == 201
            made = r.json()
            assert (made["service"], made["rule"], made["comment"]) == (
                "users", "errors", "deploy")
            assert made["ends_at"] - made["starts_at"] == pytest.approx(600)
            listed = (await http.get("/api/alerts")).json()["silences"]
            assert [s["id"] for s in listed] == [made["id"]]
            bad = await http.post("/api/admin/silences", params={"seconds": "-1"})
            assert bad.status_code == 400
            assert "seconds" in bad.json()["error"]
            unknown = await http.post("/api/admin/silences", params={
                "service": "nope", "seconds": "60"})
            assert unknown.status_code == 404
            r = await http.post(f"/api/admin/silences/{made['id']}/expire")
            assert r.status_code == 200
            assert (await http.get("/api/alerts")).json()["silences"] == []
            again = await http.post(f"/api/admin/silences/{made['id']}/expire")
            assert again.status_code == 404
            anonymous = await http.post("/api/admin/silences", params={"seconds": "60"},
                                        headers={"Authorization": "Bearer wrong"})
            assert anonymous.status_code == 401
    finally:
        await server.stop()
