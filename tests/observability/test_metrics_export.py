"""ml.telemetry.export_metrics(): a mesh's registry pushed over real OTLP/HTTP to a
loopback receiver, decoded with opentelemetry-proto."""

from __future__ import annotations

import threading
import time

import pytest
from otlp_receiver import OtlpReceiver, took

import meshlite as ml
from meshlite import telemetry
from meshlite.observability._metrics import DEFAULT_LATENCY_BUCKETS
from meshlite.testing import FakeClock

READER_THREAD = "OtelPeriodicExportingMetricReader"
USERS = {"meshlite.service": "users"}


pytestmark = pytest.mark.usefixtures("otel_env_cleared")


@pytest.fixture
def mesh(clock: FakeClock) -> ml.Mesh:
    service = ml.Service("users", ["127.0.0.1:80", "127.0.0.2:80"], balancer="round_robin",
                         pipeline=ml.Pipeline(ml.Retry(attempts=2,
                                                       backoff=ml.backoff.constant(0.0),
                                                       clock=clock)))
    return ml.Mesh([service], clock=clock)


def fail_once(mesh: ml.Mesh) -> None:
    with pytest.raises(ConnectionError):  # both attempts fail: one retry, then the error
        mesh.call_sync("users", lambda b: (_ for _ in ()).throw(ConnectionError()))


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(READER_THREAD) and t.is_alive()]


def test_counters_gauges_and_histograms_reach_the_receiver(
        mesh: ml.Mesh, receiver: OtlpReceiver) -> None:
    for _ in range(3):
        mesh.call_sync("users", lambda b: b.address)
    fail_once(mesh)
    # A long interval: only force_flush() pushes, so the values are exactly known.
    export = telemetry.export_metrics(mesh, otlp_endpoint=receiver.url, interval=3600,
                                      service_name="checkout")
    try:
        assert export.force_flush()
    finally:
        export.shutdown()
    assert {e.path for e in receiver.exports} == {"/v1/metrics"}
    requests = receiver.latest("meshlite.calls", **USERS)
    assert (requests.value, requests.kind, requests.monotonic, requests.cumulative) == (
        4, "sum", True, True)
    assert requests.unit == "{call}"
    assert requests.resource["service.name"] == "checkout"
    assert requests.scope == "meshlite"
    errors = receiver.latest("meshlite.call.errors", **USERS)
    assert (errors.value, errors.attributes["error.type"]) == (1, "ConnectionError")
    assert receiver.latest("meshlite.retries", **USERS).value == 1
    attempts = [receiver.latest("meshlite.backend.attempts", **USERS,
                                **{"meshlite.backend": b}).value
                for b in ("127.0.0.1:80", "127.0.0.2:80")]
    # Round robin spreads the 5 attempts (3 calls, then 2 for the failing one) 3 and 2,
    # in an order that depends on where its rotation starts.
    assert sorted(attempts) == [2, 3]
    gauge = receiver.latest("meshlite.service.backends", **USERS)
    assert (gauge.kind, gauge.value) == ("gauge", 2)
    calls = receiver.latest("meshlite.call.duration", **USERS)
    assert (calls.kind, calls.unit, calls.count, calls.cumulative) == ("histogram", "s", 4, True)
    assert calls.bounds == DEFAULT_LATENCY_BUCKETS  # real buckets, not only count and sum
    assert sum(calls.bucket_counts) == 4
    assert len(calls.bucket_counts) == len(calls.bounds) + 1
    assert calls.value >= 0
    # mesh.call backends that are not http(s) URLs keep meshlite's attempt name
    attempt = receiver.latest("meshlite.backend.attempt.duration", **USERS,
                              **{"meshlite.backend": "127.0.0.1:80"})
    assert attempt.count in (2, 3)
    assert not any(p.metric.startswith("meshlite_") or p.metric.endswith(("_sum", "_count"))
                   for p in receiver.points)


def test_each_push_reads_the_registry_again(mesh: ml.Mesh, receiver: OtlpReceiver) -> None:
    with telemetry.export_metrics(mesh, otlp_endpoint=receiver.url, interval=3600) as export:
        mesh.call_sync("users", lambda b: b.address)
        export.force_flush()
        assert receiver.latest("meshlite.calls", **USERS).value == 1
        mesh.call_sync("users", lambda b: b.address)
        mesh.call_sync("users", lambda b: b.address)
        export.force_flush()
        assert receiver.latest("meshlite.calls", **USERS).value == 3
    # One reading of the registry per push: one value per series and push.
    per_push = [[p for p in e.points if p.metric == "meshlite.calls"]
                for e in receiver.exports if e.points]
    assert [len(points) for points in per_push[:2]] == [1, 1]


def test_each_cumulative_series_starts_before_what_it_counts(
        mesh: ml.Mesh, receiver: OtlpReceiver) -> None:
    # start_time_unix_nano begins a cumulative sequence: a receiver takes the counts
    # as made between it and the point's time. Calls made before the export started
    # (it was the export's start), and a series counting from 0 again (a backend
    # removed and added back, which kept its old start: a drop), each need theirs.
    before = time.time_ns()
    for _ in range(4):
        mesh.call_sync("users", lambda b: b.address)
    with telemetry.export_metrics(mesh, otlp_endpoint=receiver.url, interval=3600) as export:
        assert export.force_flush()
        first = receiver.latest("meshlite.calls", **USERS)
        assert first.value == 4
        assert first.start < before  # not the export's start, after the 4 calls
        duration = receiver.latest("meshlite.call.duration", **USERS)
        assert duration.start == first.start
        assert export.force_flush()  # a series that went on: the same start
        assert receiver.latest("meshlite.calls", **USERS).start == first.start
        pushed = receiver.latest("meshlite.calls", **USERS).time
        service = mesh.service("users")
        backend = "127.0.0.1:80"
        old = receiver.latest("meshlite.backend.attempts", **USERS,
                              **{"meshlite.backend": backend})
        service.set_backends(["127.0.0.2:80"])
        assert export.force_flush()  # the backend's series are gone
        service.set_backends(["127.0.0.1:80", "127.0.0.2:80"])
        for _ in range(2):
            mesh.call_sync("users", lambda b: b.address)
        assert export.force_flush()
        new = receiver.latest("meshlite.backend.attempts", **USERS,
                              **{"meshlite.backend": backend})
        assert new.value < old.value  # counting from 0 again
        assert new.start > pushed >= old.start  # a new sequence, not a drop


def test_shutdown_stops_the_export_thread(mesh: ml.Mesh, receiver: OtlpReceiver) -> None:
    before = len(reader_threads())
    export = telemetry.export_metrics(mesh, otlp_endpoint=receiver.url, interval=3600)
    assert len(reader_threads()) == before + 1
    export.shutdown()
    export.shutdown()  # harmless twice
    assert len(reader_threads()) == before
    assert export.force_flush()  # nothing to do once stopped
    assert "stopped" in repr(export)
    # shutdown() pushes a last time.
    assert receiver.latest("meshlite.calls", **USERS).value == 0


def test_periodic_push_without_force_flush(mesh: ml.Mesh, receiver: OtlpReceiver) -> None:
    mesh.call_sync("users", lambda b: b.address)
    pushed = threading.Event()
    with telemetry.export_metrics(mesh, otlp_endpoint=receiver.url, interval=0.05):
        for _ in range(200):  # waits for the reader's thread; bounded, no timing assertion
            if receiver.points:
                pushed.set()
                break
            pushed.wait(0.02)
    assert pushed.is_set()
    assert receiver.latest("meshlite.calls", **USERS).value == 1


def test_endpoint_precedence(mesh: ml.Mesh) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/",
           "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:9000/custom"}
    disabled = {"OTEL_SDK_DISABLED": "true"}
    # The kill switch makes each a no-op (no thread), which keeps this test offline.
    cases = [
        ("http://arg:4318", env, "http://arg:4318/v1/metrics"),
        ("http://arg:4318/v1/metrics", {}, "http://arg:4318/v1/metrics"),
        (None, env, "http://metrics:9000/custom"),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/"}, "http://base:4318/v1/metrics"),
    ]
    for argument, environ, expected in cases:
        export = telemetry.export_metrics(mesh, otlp_endpoint=argument,
                                          environ={**environ, **disabled})
        assert export.endpoint == expected
        assert export.meter_provider is None
        assert export.force_flush()
        export.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"otlp_endpoint": "localhost:4318"}, "otlp_endpoint"),
        ({"otlp_endpoint": 4318}, "otlp_endpoint"),
        ({"otlp_endpoint": None}, "otlp_endpoint"),  # and nothing in the environment
        ({"otlp_endpoint": "http://h:4318", "interval": 0}, "interval"),
        ({"otlp_endpoint": "http://h:4318", "interval": True}, "interval"),
        ({"otlp_endpoint": "http://h:4318", "interval": float("inf")}, "interval"),
        ({"otlp_endpoint": "http://h:4318", "service_name": " "}, "service_name"),
    ],
)
def test_bad_arguments_name_the_argument(mesh: ml.Mesh, kwargs: dict[str, object],
                                         named: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"telemetry.export_metrics: {named} must be"):
        telemetry.export_metrics(mesh, environ={}, **kwargs)  # type: ignore[arg-type]
    assert reader_threads() == []


def test_bad_environment_variable_is_named(mesh: ml.Mesh) -> None:
    with pytest.raises(ml.ConfigError, match="OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        telemetry.export_metrics(
            mesh, environ={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "collector:4318"})


def test_source_without_metrics_is_refused() -> None:
    with pytest.raises(ml.ConfigError, match="metrics=False"):
        telemetry.export_metrics(ml.Mesh([], metrics=False), otlp_endpoint="http://h:4318")
    with pytest.raises(ml.ConfigError, match="source"):
        telemetry.export_metrics(42, otlp_endpoint="http://h:4318")


def test_prometheus_exposition_is_reachable_from_telemetry() -> None:
    import urllib.request

    import meshlite as ml
    from meshlite import observability

    assert ml.telemetry.prometheus_app is observability.prometheus_app
    mesh = ml.Mesh([ml.Service("users", ["a"])])
    mesh.call_sync("users", lambda backend: 1)
    assert 'meshlite_requests_total{service="users"} 1' in ml.telemetry.render(mesh)
    with (ml.telemetry.start_http_server(mesh) as server,
          urllib.request.urlopen(server.url, timeout=5) as response):  # loopback only
        body = response.read().decode()
    assert 'meshlite_requests_total{service="users"} 1' in body


def test_a_stalled_collector_holds_up_neither_flush_nor_shutdown(
        mesh: ml.Mesh, stalled: str) -> None:
    export = telemetry.export_metrics(mesh, otlp_endpoint=stalled, interval=60.0)
    # Bounds far above the timeouts given, far below the exporter's 10 s per export.
    flushed, seconds = took(lambda: export.force_flush(timeout_millis=100))
    assert flushed is False
    assert seconds < 5
    _, seconds = took(lambda: export.shutdown(timeout_millis=100))
    assert seconds < 5
    assert "stopped" in repr(export)
