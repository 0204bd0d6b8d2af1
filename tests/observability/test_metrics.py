"""The metrics registry of a mesh (``mesh.metrics``) and the ``Metrics`` policy:
what each call, attempt and event records, read back through ``collect()``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from _system import free_port
from samples import value

import meshlite as ml
from meshlite.observability import MetricFamily, Metrics, render
from meshlite.observability._prometheus import render_mesh
from meshlite.testing import FakeClock


def family(source: Any, name: str) -> MetricFamily:
    return next(f for f in source.collect() if f.name == name)


def bucket(source: Any, name: str, le: str, **labels: str) -> float | None:
    return value(source, name, "_bucket", **labels, le=le)


def mesh_of(*services: ml.Service, clock: FakeClock) -> tuple[ml.Mesh, Any]:
    mesh = ml.Mesh(services, clock=clock)
    assert mesh.metrics is not None
    return mesh, mesh.metrics


def plain(name: str = "users", backends: tuple[str, ...] = ("a",), **kwargs: Any
          ) -> ml.Service:
    kwargs.setdefault("pipeline", ml.Pipeline())
    kwargs.setdefault("outlier_detection", None)
    return ml.Service(name, list(backends), balancer="round_robin", **kwargs)


# -- per call ---------------------------------------------------------------------


def test_call_latency_lands_in_its_bucket(clock: FakeClock) -> None:
    mesh, m = mesh_of(plain(), clock=clock)

    def slow(backend: ml.Backend) -> str:
        clock.advance(0.003)
        return backend.address

    assert mesh.call_sync("users", slow) == "a"
    name = "meshlite_request_duration_seconds"
    assert bucket(m, name, "0.0025", service="users") == 0
    assert bucket(m, name, "0.005", service="users") == 1
    assert bucket(m, name, "+Inf", service="users") == 1
    assert value(m, name, "_sum", service="users") == pytest.approx(0.003)
    assert value(m, name, "_count", service="users") == 1
    assert value(m, "meshlite_requests_total", service="users") == 1


def test_errors_are_counted_by_type(clock: FakeClock) -> None:
    mesh, m = mesh_of(plain(), clock=clock)

    def boom(backend: str) -> None:
        raise KeyError("x")

    for _ in range(2):
        with pytest.raises(KeyError):
            mesh.call_sync("users", boom)
    mesh.call_sync("users", lambda b: b)
    assert value(m, "meshlite_request_errors_total", service="users", error="KeyError") == 2
    assert value(m, "meshlite_requests_total", service="users") == 3


def test_in_flight_counts_running_calls(clock: FakeClock) -> None:
    mesh, m = mesh_of(plain(), clock=clock)
    seen: list[float | None] = []

    def inside(backend: str) -> None:
        seen.append(value(m, "meshlite_requests_in_flight", service="users"))
        seen.append(value(m, "meshlite_backend_in_flight", service="users", backend="a"))

    mesh.call_sync("users", inside)
    assert seen == [1, 1]
    assert value(m, "meshlite_requests_in_flight", service="users") == 0


def test_backend_attempts_and_histograms(clock: FakeClock) -> None:
    mesh, m = mesh_of(plain(backends=("a", "b")), clock=clock)

    def call(backend: ml.Backend) -> None:
        clock.advance(0.02 if backend.address == "a" else 0.2)
        if backend.address == "b":
            raise ConnectionError("down")

    for _ in range(4):  # round robin: two attempts on each backend
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", call)
    h = "meshlite_backend_request_duration_seconds"
    assert bucket(m, h, "0.025", service="users", backend="a") == 2
    assert bucket(m, h, "0.1", service="users", backend="b") == 0
    assert bucket(m, h, "0.25", service="users", backend="b") == 2  # failures are timed too
    assert value(m, "meshlite_backend_requests_total", service="users", backend="b") == 2
    assert value(m, "meshlite_backend_errors_total", service="users", backend="b") == 2
    assert value(m, "meshlite_backend_errors_total", service="users", backend="a") == 0


def test_a_backend_never_called_shows_an_empty_histogram(clock: FakeClock) -> None:
    _, m = mesh_of(plain(backends=("a",)), clock=clock)
    h = "meshlite_backend_request_duration_seconds"
    assert value(m, h, "_count", service="users", backend="a") == 0
    assert value(m, "meshlite_requests_total", service="users") == 0


async def test_async_calls_and_cancellation(clock: FakeClock) -> None:
    mesh, m = mesh_of(plain(), clock=clock)
    started = asyncio.Event()

    async def fast(backend: ml.Backend) -> str:
        clock.advance(0.04)
        return backend.address

    async def hangs(backend: str) -> None:
        started.set()
        await asyncio.Event().wait()

    assert await mesh.call("users", fast) == "a"
    task = asyncio.ensure_future(mesh.call("users", hangs))
    await started.wait()
    assert value(m, "meshlite_requests_in_flight", service="users") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bucket(m, "meshlite_request_duration_seconds", "0.05", service="users") == 2
    assert value(m, "meshlite_request_errors_total", service="users",
                 error="CancelledError") == 1
    assert value(m, "meshlite_requests_in_flight", service="users") == 0
    assert value(m, "meshlite_backend_in_flight", service="users", backend="a") == 0


def test_threads_lose_no_counts(clock: FakeClock) -> None:
    mesh, m = mesh_of(plain(backends=("a", "b")), clock=clock)
    threads, calls = 8, 500
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for _ in range(calls):
            mesh.call_sync("users", lambda b: b)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    total = threads * calls
    assert value(m, "meshlite_requests_total", service="users") == total
    h = "meshlite_backend_request_duration_seconds"
    assert sum(value(m, h, "_count", service="users", backend=b) or 0
               for b in ("a", "b")) == total
    series = m._calls["users"]
    assert series.pending == []  # the scrape counted every latency recorded
    assert value(m, "meshlite_requests_total", service="users") == total


# -- events ---------------------------------------------------------------------------


def test_retries_and_exhaustion(clock: FakeClock) -> None:
    retry = ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0), clock=clock)
    mesh, m = mesh_of(plain(backends=("a", "b"), pipeline=ml.Pipeline(retry)), clock=clock)
    assert value(m, "meshlite_retries_total", service="users") == 0  # known at 0
    attempts: list[str] = []

    def first_attempt_fails(backend: ml.Backend) -> str:
        attempts.append(backend.address)
        if len(attempts) == 1:
            raise ConnectionError("first attempt")
        return backend.address

    mesh.call_sync("users", first_attempt_fails)
    with pytest.raises(ConnectionError):
        mesh.call_sync("users", lambda b: (_ for _ in ()).throw(ConnectionError("all")))
    assert value(m, "meshlite_retries_total", service="users") == 2
    assert value(m, "meshlite_retries_exhausted_total", service="users",
                 reason="attempts") == 1
    assert value(m, "meshlite_requests_total", service="users") == 2
    assert value(m, "meshlite_request_errors_total", service="users",
                 error="ConnectionError") == 1


def test_breaker_state_and_transitions(clock: FakeClock) -> None:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=2, open_seconds=10.0,
                                clock=clock)
    mesh, m = mesh_of(plain(pipeline=ml.Pipeline(breaker)), clock=clock)
    state = "meshlite_circuit_breaker_state"
    assert value(m, state, service="users", breaker="users", state="closed") == 1
    for _ in range(2):
        with pytest.raises(ConnectionError):
            mesh.call_sync("users", lambda b: (_ for _ in ()).throw(ConnectionError()))
    with pytest.raises(ml.CircuitOpenError):
        mesh.call_sync("users", lambda b: b)
    assert value(m, state, service="users", breaker="users", state="open") == 1
    assert value(m, state, service="users", breaker="users", state="closed") == 0
    assert value(m, "meshlite_circuit_breaker_transitions_total", service="users",
                 breaker="users", state="open") == 1
    assert value(m, "meshlite_rejections_total", service="users", policy="circuit_breaker",
                 reason="circuit_open") == 1
    assert value(m, "meshlite_request_errors_total", service="users",
                 error="CircuitOpenError") == 1
    clock.advance(10.0)
    assert value(m, state, service="users", breaker="users", state="half_open") == 1


def test_rate_limit_rejections_and_waits(clock: FakeClock) -> None:
    reject = ml.RateLimit(rate=1.0, burst=1, mode="reject", clock=clock)
    wait = ml.RateLimit(rate=1.0, burst=1, mode="wait", clock=clock)
    mesh, m = mesh_of(plain("r", pipeline=ml.Pipeline(reject)),
                      plain("w", pipeline=ml.Pipeline(wait)), clock=clock)
    mesh.call_sync("r", lambda b: b)
    with pytest.raises(ml.RateLimitedError):
        mesh.call_sync("r", lambda b: b)
    mesh.call_sync("w", lambda b: b)
    mesh.call_sync("w", lambda b: b)  # waits one second for its slot
    assert value(m, "meshlite_rejections_total", service="r", policy="rate_limit",
                 reason="rate_limited") == 1
    assert value(m, "meshlite_rate_limit_waits_total", service="w") == 1
    assert value(m, "meshlite_rate_limit_wait_seconds_total", service="w") == pytest.approx(1.0)
    assert value(m, "meshlite_rate_limit_waits_total", service="r") == 0


def test_cache_hits_and_misses(clock: FakeClock) -> None:
    cache = ml.Cache(ttl=30.0, clock=clock)
    mesh, m = mesh_of(plain(pipeline=ml.Pipeline(cache)), clock=clock)

    def get(backend: str, key: int) -> int:
        return key * 2

    for key in (1, 1, 1, 2):
        mesh.call_sync("users", get, key)
    assert value(m, "meshlite_cache_hits_total", service="users") == 2
    assert value(m, "meshlite_cache_misses_total", service="users") == 2


def test_ejection_gauges_and_counter(clock: FakeClock) -> None:
    detection = ml.OutlierDetection(consecutive_failures=2, base_ejection_seconds=30.0,
                                    max_ejection_percent=50)
    service = ml.Service("users", ["a", "b"], balancer="round_robin",
                         pipeline=ml.Pipeline(), outlier_detection=detection)
    mesh, m = mesh_of(service, clock=clock)

    def a_fails(backend: ml.Backend) -> str:
        if backend.address == "a":
            raise ConnectionError("a")
        return backend.address

    for _ in range(4):
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", a_fails)
    assert value(m, "meshlite_backend_ejected", service="users", backend="a") == 1
    assert value(m, "meshlite_backend_ejected", service="users", backend="b") == 0
    assert value(m, "meshlite_backend_ejections_total", service="users", backend="a") == 1
    assert value(m, "meshlite_service_available_backends", service="users") == 1
    assert value(m, "meshlite_service_backends", service="users") == 2
    clock.advance(31.0)
    assert value(m, "meshlite_backend_ejected", service="users", backend="a") == 0


def test_a_pipeline_shared_by_two_services_counts_each_event_once(clock: FakeClock) -> None:
    shared = ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0), clock=clock))
    mesh, m = mesh_of(plain("one", pipeline=shared), plain("two", pipeline=shared),
                      clock=clock)
    attempts: list[int] = []

    def first_fails(backend: str) -> str:
        attempts.append(1)
        if len(attempts) % 2:
            raise ConnectionError("first attempt")
        return backend

    mesh.call_sync("one", first_fails)
    assert value(m, "meshlite_retries_total", service="one") == 1
    assert value(m, "meshlite_retries_total", service="two") == 0


# -- lifecycle of services and meshes --------------------------------------------------


def test_late_registration_and_overrides_are_recorded(clock: FakeClock) -> None:
    mesh, m = mesh_of(plain(), clock=clock)
    retry = ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0), clock=clock)
    mesh.register(plain("late", pipeline=ml.Pipeline(retry)))
    calls: list[str] = []

    def flaky(backend: str) -> str:
        calls.append(backend)
        if len(calls) == 1:
            raise ConnectionError("once")
        return backend

    mesh.call_sync("late", flaky)
    assert value(m, "meshlite_retries_total", service="late") == 1
    h = "meshlite_backend_request_duration_seconds"
    with mesh.override("users", ["fake:1"]):
        assert mesh.call_sync("users", lambda b: b.address) == "fake:1"
        assert value(m, h, "_count", service="users", backend="fake:1") == 1
    # The service's calls count on; the override's backend is gone, with its series
    # (as a backend a reload removes).
    assert value(m, "meshlite_requests_total", service="users") == 1
    assert value(m, h, "_count", service="users", backend="fake:1") is None


async def test_a_changed_pipeline_is_recorded_through_its_new_chain(clock: FakeClock) -> None:
    # The mesh keeps each service's chain recorded; a new pipeline or an injected
    # policy must be what the next call runs (sync and async), and still recorded.
    service = plain()
    mesh, m = mesh_of(service, clock=clock)
    assert mesh.call_sync("users", lambda b: b.address) == "a"
    assert await mesh.call("users", lambda b: b.address) == "a"
    remove = service.inject(ml.FaultInjection(rate=1.0, error=KeyError("injected")))
    with pytest.raises(KeyError):
        mesh.call_sync("users", lambda b: b.address)
    with pytest.raises(KeyError):
        await mesh.call("users", lambda b: b.address)
    remove()
    service.set_pipeline(ml.Pipeline(ml.Fallback("fallback")))
    assert mesh.call_sync("users", lambda b: 1 / 0) == "fallback"
    assert await mesh.call("users", lambda b: 1 / 0) == "fallback"
    assert value(m, "meshlite_requests_total", service="users") == 6
    assert value(m, "meshlite_request_errors_total", service="users", error="KeyError") == 2


def test_removed_backends_lose_their_series(clock: FakeClock) -> None:
    service = plain(backends=("a", "b"))
    mesh, m = mesh_of(service, clock=clock)
    mesh.call_sync("users", lambda b: b)
    mesh.call_sync("users", lambda b: b)
    service.set_backends(["b", "c"])
    h = "meshlite_backend_request_duration_seconds"
    assert value(m, h, "_count", service="users", backend="a") is None
    assert value(m, h, "_count", service="users", backend="b") == 1
    assert value(m, h, "_count", service="users", backend="c") == 0


def test_a_reweighted_backend_keeps_its_histogram(clock: FakeClock) -> None:
    service = plain(backends=("a",))
    mesh, m = mesh_of(service, clock=clock)
    mesh.call_sync("users", lambda b: b)
    service.set_backends([ml.Backend("a", weight=3.0)])  # a new endpoint, same address
    mesh.call_sync("users", lambda b: b)
    h = "meshlite_backend_request_duration_seconds"
    assert value(m, h, "_count", service="users", backend="a") == 2  # no counter reset
    assert value(m, "meshlite_requests_total", service="users") == 2


def test_attempts_are_timed_by_the_endpoint_with_no_clock_read_of_their_own(
    clock: FakeClock,
) -> None:
    reads = 0

    class CountingClock(FakeClock):
        def monotonic(self) -> float:
            nonlocal reads
            reads += 1
            return super().monotonic()

    counting = CountingClock()
    on = ml.Mesh([plain(backends=("a",))], clock=counting)
    off = ml.Mesh([plain(backends=("a",))], clock=counting, metrics=False)
    before = reads
    off.call_sync("users", lambda b: b)
    without, before = reads - before, reads
    on.call_sync("users", lambda b: b)
    assert reads - before == without + 2  # the call's start and end, nothing per attempt


def test_each_mesh_has_its_own_registry(clock: FakeClock) -> None:
    one, m1 = mesh_of(plain(), clock=clock)
    _, m2 = mesh_of(plain(), clock=clock)
    one.call_sync("users", lambda b: b)
    assert value(m1, "meshlite_requests_total", service="users") == 1
    assert value(m2, "meshlite_requests_total", service="users") == 0


def test_metrics_off(clock: FakeClock) -> None:
    mesh = ml.Mesh([plain()], clock=clock, metrics=False)
    assert mesh.metrics is None
    assert mesh.call_sync("users", lambda b: b.address) == "a"
    service = mesh.service("users")
    assert service._histogram_bounds is None  # nothing recorded per attempt either
    assert all(e.histogram() is None for e in service.endpoints)
    with pytest.raises(ml.ConfigError, match="metrics=False"):
        render(mesh)
    assert render_mesh(mesh).startswith("# meshlite: this mesh was made with metrics=False")


def test_bad_arguments() -> None:
    with pytest.raises(ml.ConfigError, match="metrics"):
        ml.Mesh([], metrics="yes")  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match="buckets"):
        Metrics(buckets=(0.5, 0.1))
    with pytest.raises(ml.ConfigError, match="buckets"):
        Metrics(buckets=())
    with pytest.raises(ml.ConfigError, match="buckets"):
        Metrics(buckets=("a",))  # type: ignore[arg-type]


# -- the Metrics policy ---------------------------------------------------------------


def test_metrics_policy_records_per_operation(clock: FakeClock) -> None:
    metrics = Metrics(clock=clock)
    retry = ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0), clock=clock)
    pipeline = ml.Pipeline(metrics, retry)
    unwatch = metrics.watch(pipeline)
    failures = [ConnectionError("1"), ConnectionError("2")]

    @pipeline
    def lookup(key: int) -> int:
        clock.advance(0.2)
        if failures:
            raise failures.pop()
        return key

    assert lookup(7) == 7
    assert value(metrics, "meshlite_retries_total", service="") == 2
    with pytest.raises(ZeroDivisionError):
        pipeline.call(lambda: 1 / 0)
    op = lookup.__qualname__
    assert value(metrics, "meshlite_operation_requests_total", service="", operation=op) == 1
    assert value(metrics, "meshlite_operation_request_duration_seconds", "_bucket",
                 service="", operation=op, le="0.5") == 0  # three attempts: 0.6 s
    assert value(metrics, "meshlite_operation_request_duration_seconds", "_sum",
                 service="", operation=op) == pytest.approx(0.6)
    errors = family(metrics, "meshlite_operation_request_errors_total")
    assert [dict(s.labels)["error"] for s in errors.samples] == ["ZeroDivisionError"]
    unwatch()
    failures.append(ConnectionError("3"))
    assert lookup(8) == 8  # one more retry, no longer counted
    assert value(metrics, "meshlite_retries_total", service="") == 2
    assert value(metrics, "meshlite_operation_requests_total", service="", operation=op) == 2


async def test_metrics_policy_async(clock: FakeClock) -> None:
    metrics = Metrics(clock=clock)

    @ml.Pipeline(metrics, service="svc")
    async def fetch() -> str:
        clock.advance(0.001)
        return "ok"

    assert await fetch() == "ok"
    assert value(metrics, "meshlite_operation_requests_total", service="svc",
                 operation=fetch.__qualname__) == 1
    assert value(metrics, "meshlite_operation_requests_in_flight", service="svc",
                 operation=fetch.__qualname__) == 0


def test_metrics_policy_keeps_a_series_per_service_and_operation(clock: FakeClock) -> None:
    metrics = Metrics(clock=clock)
    plain = ml.Pipeline(metrics)  # no service: labelled service=""
    named = ml.Pipeline(metrics, service="svc")
    other = ml.Pipeline(metrics, service="other")

    def read(mine: str, theirs: str) -> int:
        # In flight while it runs, in its own series only.
        gauge = "meshlite_operation_requests_in_flight"
        assert value(metrics, gauge, service=mine, operation=read.__qualname__) == 1
        assert value(metrics, gauge, service=theirs, operation=read.__qualname__) in (0, None)
        return 1

    def write() -> int:
        return 2

    other.call(read, "other", "svc")
    other.call(write)
    for _ in range(3):
        named.call(read, "svc", "other")
    named.call(write)
    plain.call(write)
    total = "meshlite_operation_requests_total"
    counts = {(dict(s.labels)["service"], dict(s.labels)["operation"]): s.value
              for s in family(metrics, total).samples}
    r, w = read.__qualname__, write.__qualname__
    assert counts == {("", w): 1, ("other", r): 1, ("other", w): 1, ("svc", r): 3, ("svc", w): 1}
    assert list(counts) == sorted(counts), "series are reported in label order"
    assert value(metrics, "meshlite_operation_requests_in_flight", service="svc", operation=r) == 0
    assert repr(metrics) == "Metrics(operations=5)"


def test_metrics_policy_counts_calls_in_flight_across_threads(clock: FakeClock) -> None:
    metrics = Metrics(clock=clock)
    pipeline = ml.Pipeline(metrics, service="svc")
    started, release = threading.Barrier(5), threading.Event()

    def hold() -> None:
        started.wait()
        release.wait(5)

    threads = [threading.Thread(target=pipeline.call, args=(hold,)) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    op = hold.__qualname__
    assert value(metrics, "meshlite_operation_requests_in_flight", service="svc", operation=op) == 4
    release.set()
    for t in threads:
        t.join()
    assert value(metrics, "meshlite_operation_requests_in_flight", service="svc", operation=op) == 0
    assert value(metrics, "meshlite_operation_requests_total", service="svc", operation=op) == 4


# -- over HTTP ------------------------------------------------------------------------


async def test_http_calls_are_recorded() -> None:
    from meshlite.testing import FakeBackend

    async with FakeBackend() as ok, FakeBackend(error_rate=1.0, error_status=503) as bad:
        service = ml.Service("api", [ok.url, bad.url], balancer="round_robin",
                             pipeline=ml.Pipeline(), outlier_detection=None)
        mesh = ml.Mesh([service])
        m = mesh.metrics
        async with mesh, mesh.http("api") as client:  # closing the mesh closes its pools
            statuses = sorted([(await client.get("/x")).status_code for _ in range(4)])
    assert statuses == [200, 200, 503, 503]
    assert value(m, "meshlite_requests_total", service="api") == 4
    assert value(m, "meshlite_request_errors_total", service="api", error="http_503") == 2
    h = "meshlite_backend_request_duration_seconds"
    assert value(m, h, "_count", service="api", backend=ok.url) == 2
    assert value(m, "meshlite_backend_errors_total", service="api", backend=bad.url) == 2


def test_per_backend_event_counters_start_at_zero_for_every_backend() -> None:
    # rate() and increase() see a counter's first event only when the series existed
    # before it: ejections (with outlier detection) and health-check failures (with a
    # health check) are made at 0 for each backend, those a change adds too.
    from meshlite.observability import render

    def series(text: str, family: str) -> dict[tuple[str, str], float]:
        found = {}
        for line in text.splitlines():
            if line.startswith(family + "{"):
                labels = dict(part.split("=", 1) for part in line[len(family) + 1:
                                                                  line.index("}")].split(","))
                found[(labels["service"].strip('"'), labels["backend"].strip('"'))] = float(
                    line.rpartition(" ")[2])
        return found

    users = ml.Service("users", ["a:1", "b:2"], health_check=ml.HealthCheck(lambda b: True))
    plain = ml.Service("plain", ["c:3"], outlier_detection=None)
    mesh = ml.Mesh([users, plain])
    text = render(mesh)
    assert series(text, "meshlite_backend_ejections_total") == {
        ("users", "a:1"): 0.0, ("users", "b:2"): 0.0}  # plain detects no outliers
    assert series(text, "meshlite_health_check_failures_total") == {
        ("users", "a:1"): 0.0, ("users", "b:2"): 0.0}
    users.set_backends(["a:1", "d:4"])
    assert set(series(render(mesh), "meshlite_health_check_failures_total")) == {
        ("users", "a:1"), ("users", "d:4")}


async def test_backends_replaced_by_new_addresses_leave_no_event_series_behind() -> None:
    # Pods come and go under new addresses (discovery): the ejections counted for each
    # address stayed in every scrape once its backend had left, one series per
    # address ever ejected, while its other series went with its endpoint.
    import httpx

    from meshlite.observability import start_http_server
    from meshlite.testing import FakeBackend

    used: set[str] = set()

    def dead_address() -> str:  # a loopback port nothing listens on
        # (outside the ephemeral range: a server another test starts on port 0 at the
        # same time cannot be given it, and answer in its place), and one not drawn
        # before: an address put back within its ejection comes back ejected, by design
        while (address := f"http://127.0.0.1:{free_port()}") in used:
            pass
        used.add(address)
        return address

    detection = ml.OutlierDetection(consecutive_failures=1, max_ejection_percent=50)
    async with FakeBackend() as live:
        users = ml.Service("users", [live.url], balancer="round_robin",
                           outlier_detection=detection, pipeline=ml.Pipeline(
                               ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0))))
        mesh = ml.Mesh([users])
        server = start_http_server(mesh)
        try:
            async with mesh, mesh.http("users") as client, httpx.AsyncClient() as scraper:
                for _ in range(20):
                    dead = dead_address()
                    users.set_backends([live.url, dead])
                    for _ in range(2):  # one attempt meets the dead backend: ejected
                        assert (await client.get("/")).status_code == 200
                    text = (await scraper.get(server.url)).text
                    ejected = {line.split('backend="')[1].split('"')[0]:
                               float(line.rpartition(" ")[2])
                               for line in text.splitlines()
                               if line.startswith("meshlite_backend_ejections_total{")}
                    # the backends it has now (at 0 until ejected), none it had before
                    assert ejected == {live.url: 0.0, dead: 1.0}
        finally:
            server.stop()
