"""The dashboard's engine without a web server: alert rules, the per-second
history ring buffer, the sampler, alert evaluation, events and the webhook.

The sampler is driven by ``Monitor.tick(now)`` with explicit wall times, and the
services run on a FakeClock, so nothing sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import meshlite as ml
from meshlite.observability._dashboard import AlertFired, AlertResolved, AlertRule, Alerts
from meshlite.observability._dashboard._alerts import MISSING_SERVICE_SECONDS
from meshlite.observability._dashboard._history import History
from meshlite.observability._dashboard._monitor import Monitor
from meshlite.testing import FakeClock

T0 = 1_700_000_000.0


def make_mesh(clock: FakeClock, *services: ml.Service) -> ml.Mesh:
    if not services:
        services = (ml.Service("users", ["a", "b"], balancer="round_robin",
                               pipeline=ml.Pipeline(), outlier_detection=None),)
    return ml.Mesh(services, clock=clock)


def traffic(mesh: ml.Mesh, clock: FakeClock, n: int, *, fail: int = 0,
            latency: float = 0.01) -> None:
    """``n`` calls to users, the first ``fail`` of them failing, each ``latency`` long."""
    for i in range(n):
        def call(backend: Any, i: int = i) -> str:
            clock.advance(latency)
            if i < fail:
                raise ConnectionError("refused")
            return "ok"

        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", call)


# -- rules ---------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": "", "condition": "p99", "threshold": 1.0}, "name"),
    ({"name": "r", "condition": "latency", "threshold": 1.0}, "condition"),
    ({"name": "r", "condition": "error_rate"}, "threshold"),
    ({"name": "r", "condition": "error_rate", "threshold": 1.5}, "threshold"),
    ({"name": "r", "condition": "p99", "threshold": 0}, "threshold"),
    ({"name": "r", "condition": "breaker_open", "threshold": 0.5}, "threshold"),
    ({"name": "r", "condition": "p99", "threshold": 1.0, "for_seconds": -1}, "for_seconds"),
    ({"name": "r", "condition": "p99", "threshold": 1.0, "window": 0}, "window"),
    ({"name": "r", "condition": "p99", "threshold": 1.0, "window": 301}, "window"),
    ({"name": "r", "condition": "p99", "threshold": 1.0, "min_requests": 0}, "min_requests"),
    ({"name": "r", "condition": "p99", "threshold": 1.0, "service": ""}, "service"),
    ({"name": "r", "condition": "p99", "threshold": 1.0, "severity": "page"}, "severity"),
])
def test_rule_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=rf"AlertRule.*: {field} must be"):
        AlertRule(**kwargs)


def test_rule_describes_itself() -> None:
    rule = AlertRule("slow", "p99", threshold=0.25, for_seconds=5, service="users")
    assert rule.describe() == "p99 > 250 ms over 10s"
    assert rule.as_dict()["for_seconds"] == 5.0
    assert AlertRule("e", "error_rate", threshold=0.05).describe() == "error rate > 5.0% over 10s"


def test_alerts_reject_duplicates_and_bad_webhook() -> None:
    rule = AlertRule("r", "breaker_open")
    alerts = Alerts([rule])
    with pytest.raises(ml.ConfigError, match="a rule named 'r' exists"):
        alerts.add(AlertRule("r", "no_healthy_backend"))
    with pytest.raises(ml.ConfigError, match="two rules are named 'r'"):
        alerts.replace([rule, rule])
    with pytest.raises(ml.ConfigError, match="webhook must be an http"):
        Alerts(webhook="ftp://example.com/hook")
    with pytest.raises(ml.ConfigError, match=r"rule must be an ml\.AlertRule"):
        alerts.add("r")  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match="webhook_timeout must be > 0"):
        alerts.replace([rule], webhook_timeout=0)
    alerts.replace([rule], webhook="http://127.0.0.1:1/hook", webhook_timeout=1.5)
    assert (alerts.webhook, alerts.webhook_timeout) == ("http://127.0.0.1:1/hook", 1.5)
    alerts.replace([rule], webhook=None)
    assert (alerts.webhook, alerts.webhook_timeout) == (None, 1.5)
    assert alerts.rules == (rule,)


# -- history and sampler ----------------------------------------------------------


def test_history_ring_keeps_last_capacity_seconds() -> None:
    h = History(capacity=4)
    for s in range(10, 16):
        h.record(s, requests=s, errors=1, p50=0.1, p99=0.2)
    cols = h.columns(4)
    assert cols["start"] == 12
    assert cols["requests"] == [12, 13, 14, 15]
    # older slots were overwritten: asking for more than capacity still gives 4
    assert h.columns(100)["requests"] == [12, 13, 14, 15]


def test_history_gaps_read_as_none_and_same_second_accumulates() -> None:
    h = History(capacity=10)
    h.record(100, 5, 1, 0.01, 0.02)
    h.record(100, 3, 0, None, None)  # a late sample of the same second
    h.record(103, 2, 2, 0.5, 0.9)
    cols = h.columns(4)
    assert cols["requests"] == [8, None, None, 2]
    assert cols["errors"] == [1, None, None, 2]
    assert cols["p99"] == [0.02, None, None, 0.9]


def test_sampler_measures_each_second_from_endpoints(clock: FakeClock) -> None:
    mesh = make_mesh(clock)
    traffic(mesh, clock, 7)  # before the dashboard: part of the baseline
    monitor = Monitor(mesh, max_clients=1)
    monitor._sampler.sample(monitor.services(), 0)
    traffic(mesh, clock, 10, fail=3, latency=0.02)
    update = monitor.tick(T0)
    users = update["services"]["users"]
    assert (users["requests"], users["errors"]) == (10, 3)
    assert users["p50"] == pytest.approx(0.02)
    assert monitor.histories["users"].columns(1)["requests"] == [10]
    assert monitor.tick(T0 + 1)["services"]["users"]["requests"] == 0


def test_sampler_counts_new_backends_from_zero(clock: FakeClock) -> None:
    mesh = make_mesh(clock)
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    mesh.service("users").set_backends(["c"])
    traffic(mesh, clock, 4)
    assert monitor.tick(T0 + 1)["services"]["users"]["requests"] == 4


# -- alert evaluation ---------------------------------------------------------------


def test_error_rate_alert_fires_after_duration_and_resolves(clock: FakeClock) -> None:
    mesh = make_mesh(clock)
    events: list[ml.Event] = []
    mesh.add_hook(events.append)
    mesh.alerts.add(AlertRule("errors", "error_rate", threshold=0.2, for_seconds=2, window=1,
                              service="users", severity="critical"))
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    for second in range(3):
        traffic(mesh, clock, 10, fail=5)
        update = monitor.tick(T0 + 1 + second)
        assert ("alerts" in update) == (second == 2)  # holds at +1, fires 2 s later
    [alert] = mesh.alerts.firing()
    assert (alert.rule, alert.service, alert.value) == ("errors", "users", 0.5)
    assert "error rate > 20.0%" in alert.summary
    fired = [e for e in events if isinstance(e, AlertFired)]
    assert [(e.policy, e.service, e.rule, e.severity) for e in fired] == [
        ("alerts", "users", "errors", "critical")]

    traffic(mesh, clock, 10)  # a clean second
    update = monitor.tick(T0 + 4)
    assert update["alerts"]["firing"] == []
    [resolved] = mesh.alerts.recent()
    assert resolved.state == "resolved"
    assert resolved.resolved_at == T0 + 4
    [done] = [e for e in events if isinstance(e, AlertResolved)]
    assert done.duration == pytest.approx(1.0)


def test_error_rate_needs_min_requests(clock: FakeClock) -> None:
    mesh = make_mesh(clock)
    mesh.alerts.add(AlertRule("errors", "error_rate", threshold=0.1, min_requests=20))
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    traffic(mesh, clock, 10, fail=10)
    monitor.tick(T0 + 1)
    assert mesh.alerts.firing() == []
    traffic(mesh, clock, 10, fail=10)
    monitor.tick(T0 + 2)  # 20 attempts in the 10 s window now
    assert [a.rule for a in mesh.alerts.firing()] == ["errors"]


def test_p99_alert(clock: FakeClock) -> None:
    mesh = make_mesh(clock)
    mesh.alerts.add(AlertRule("slow", "p99", threshold=0.2, window=1))
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    traffic(mesh, clock, 99, latency=0.01)
    traffic(mesh, clock, 1, latency=0.5)
    monitor.tick(T0 + 1)
    assert mesh.alerts.firing() == []  # one slow call in 100 is the p100, not the p99
    traffic(mesh, clock, 10, latency=0.5)
    monitor.tick(T0 + 2)
    [alert] = mesh.alerts.firing()
    assert alert.value == pytest.approx(0.5)


def test_breaker_and_no_backend_alerts(clock: FakeClock) -> None:
    breaker = ml.CircuitBreaker(name="db", clock=clock)
    users = ml.Service("users", ["a"], pipeline=ml.Pipeline(breaker), clock=clock)
    empty = ml.Service("orders", [], clock=clock)
    mesh = make_mesh(clock, users, empty)
    mesh.alerts.replace([AlertRule("breaker", "breaker_open"),
                         AlertRule("nobackend", "no_healthy_backend")])
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    assert {(a.rule, a.service) for a in mesh.alerts.firing()} == {("nobackend", "orders")}
    breaker.force_open()
    mesh.service("orders").set_backends(["b"])
    monitor.tick(T0 + 1)
    assert {(a.rule, a.service) for a in mesh.alerts.firing()} == {("breaker", "users")}
    assert [a.rule for a in mesh.alerts.recent()] == ["nobackend"]


def test_removed_rule_resolves_its_alert(clock: FakeClock) -> None:
    mesh = make_mesh(clock, ml.Service("users", [], clock=clock))
    mesh.alerts.add(AlertRule("nobackend", "no_healthy_backend"))
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    assert len(mesh.alerts.firing()) == 1
    mesh.alerts.remove("nobackend")
    update = monitor.tick(T0 + 1)
    assert update["alerts"]["resolved"][0]["rule"] == "nobackend"
    assert mesh.alerts.firing() == []


def test_a_rule_waits_for_its_service_and_warns_once_if_it_never_comes(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """A rule may name a service registered in code later: no warning within
    MISSING_SERVICE_SECONDS, one warning (and only one) once that has passed, and
    a service registered afterwards is still evaluated."""
    mesh = make_mesh(clock)
    mesh.alerts.replace([AlertRule("late", "no_healthy_backend", service="later"),
                         AlertRule("typo", "no_healthy_backend", service="usres")])
    monitor = Monitor(mesh, max_clients=1)
    caplog.set_level(logging.WARNING, logger="meshlite.alerts")
    monitor.tick(T0)
    mesh.register(ml.Service("later", [], clock=clock))  # in code, once the mesh runs
    monitor.tick(T0 + 1)
    assert [(a.rule, a.service) for a in mesh.alerts.firing()] == [("late", "later")]
    for second in range(2, int(MISSING_SERVICE_SECONDS) + 5):
        monitor.tick(T0 + second)
    [warning] = [r for r in caplog.records if r.name == "meshlite.alerts"
                 and not hasattr(r, "meshlite_event")]  # not the alert's own record
    assert (warning.rule, warning.service) == ("typo", "usres")  # type: ignore[attr-defined]
    assert "alert rule 'typo' names service 'usres'" in warning.getMessage()
    assert "(services: later, users)" in warning.getMessage()


# -- webhook --------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server that records the JSON bodies POSTed to it."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
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


async def test_webhook_receives_fired_and_resolved(
        clock: FakeClock, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    mesh = make_mesh(clock, ml.Service("users", [], clock=clock))
    mesh.alerts.replace([AlertRule("nobackend", "no_healthy_backend")], webhook=url)
    monitor = Monitor(mesh, max_clients=1)
    monitor.tick(T0)
    mesh.service("users").set_backends(["a"])
    monitor.tick(T0 + 1)
    await monitor.stop()  # waits for the posts
    assert [(g["status"], g["alert"]["rule"], g["alert"]["service"]) for g in got] == [
        ("firing", "nobackend", "users"), ("resolved", "nobackend", "users")]


async def test_webhook_failure_is_logged_not_raised(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    mesh = make_mesh(clock, ml.Service("users", [], clock=clock))
    # port 9 (discard) on loopback is closed in test environments: connection refused
    mesh.alerts.replace([AlertRule("nobackend", "no_healthy_backend")],
                        webhook="http://u:pw@127.0.0.1:9/services/T0/B0/PathSecret?secret=x")
    monitor = Monitor(mesh, max_clients=1)
    with caplog.at_level(logging.WARNING, logger="meshlite.dashboard"):
        monitor.tick(T0)
        await monitor.stop()
    # The host alone: a Slack-style webhook's path is its secret, as a query may be
    assert "alert webhook http://127.0.0.1:9/... failed" in caplog.text
    assert "secret" not in caplog.text.lower()
    assert "pw" not in caplog.text
    assert len(mesh.alerts.firing()) == 1


async def test_stop_cancels_sampling(clock: FakeClock) -> None:
    monitor = Monitor(make_mesh(clock), max_clients=1)
    monitor.start()
    task = monitor._task
    assert task is not None
    await monitor.stop()
    assert task.cancelled()
    await asyncio.sleep(0)


@pytest.fixture
def trickling_receiver() -> Iterator[tuple[str, threading.Event]]:
    """A loopback receiver that answers a POST's head one byte at a time, forever
    (each byte well within a socket timeout); sets the event when the sender hangs
    up."""
    gone = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                try:
                    conn.sendall(b"HTTP/1.1 204 No Content\r\n")
                    for _ in range(600):
                        conn.sendall(b"X")
                        time.sleep(0.1)
                except OSError:
                    gone.set()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", gone
    listener.close()


async def test_a_trickling_webhook_receiver_is_given_up_within_the_timeout(
        clock: FakeClock, trickling_receiver: tuple[str, threading.Event],
        caplog: pytest.LogCaptureFixture) -> None:
    url, gone = trickling_receiver
    mesh = make_mesh(clock, ml.Service("users", [], clock=clock))
    mesh.alerts.replace([AlertRule("nobackend", "no_healthy_backend")], webhook=url,
                        webhook_timeout=0.5)
    monitor = Monitor(mesh, max_clients=1)
    with caplog.at_level(logging.WARNING, logger="meshlite.dashboard"):
        monitor.tick(T0)
        await asyncio.wait_for(monitor.stop(), 10.0)  # waits for the post
    assert "alert webhook" in caplog.text
    assert "timed out after 0.5 s" in caplog.text
    # the worker thread hung up too: it is not left reading the receiver forever
    assert await asyncio.to_thread(gone.wait, 10.0)


async def test_notifications_a_slow_webhook_has_not_taken_are_bounded(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # Alerts changing faster than the webhook answers: every notification waited for
    # the ones before it, so the waiting ones (and how late they arrive) grew without
    # end; past MAX_PENDING_NOTIFICATIONS the oldest waiting is dropped instead.
    from meshlite.observability._dashboard._monitor import MAX_PENDING_NOTIFICATIONS

    got: list[dict[str, Any]] = []
    release = threading.Event()

    class Held(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            release.wait(10.0)  # a receiver that is slow until released
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Held)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        mesh = make_mesh(clock, ml.Service("users", [], clock=clock))
        mesh.alerts.replace([AlertRule("nobackend", "no_healthy_backend")],
                            webhook=f"http://127.0.0.1:{server.server_address[1]}/hook")
        monitor = Monitor(mesh, max_clients=1)
        with caplog.at_level(logging.WARNING, logger="meshlite.dashboard"):
            for second in range(3 * MAX_PENDING_NOTIFICATIONS):  # fires, resolves, ...
                mesh.service("users").set_backends([] if second % 2 == 0 else ["a"])
                monitor.tick(T0 + second)
                await asyncio.sleep(0)
            assert len(monitor._outbox) == MAX_PENDING_NOTIFICATIONS
            release.set()
            await monitor.stop()
    finally:
        server.shutdown()
        server.server_close()
    behind = [r for r in caplog.records if "is behind" in r.getMessage()]
    assert len(behind) == 1  # once a minute, not once per notification dropped
    # The first (sent before the webhook fell behind), then the newest in order,
    # ending with the state the alert is in: never "resolved" before its "fired".
    assert len(got) == 1 + MAX_PENDING_NOTIFICATIONS
    states = [g["status"] for g in got[1:]]
    assert states == ["firing", "resolved"] * (MAX_PENDING_NOTIFICATIONS // 2)
    assert not mesh.alerts.firing()  # the last one sent is the state it is in
