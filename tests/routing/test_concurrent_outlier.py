"""Outlier detection under real concurrency: many threads failing on one backend at
once eject it at exactly the configured streak, and count every failure in exactly
one streak (none forgiven with a streak that already ejected); a success enters the
failure-rate window together with its count."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import meshlite as ml
from meshlite.mesh import Mesh
from meshlite.observability import render
from meshlite.routing import Backend, OutlierDetection, Service
from meshlite.testing import FakeBackend

THREADS = 8
LIMIT = 10


def hammer(calls: int, call: Callable[[], object]) -> list[BaseException]:
    """``call`` ``calls`` times from each of THREADS threads; returns unexpected errors."""
    unexpected: list[BaseException] = []

    def run() -> None:
        for _ in range(calls):
            try:
                call()
            except ConnectionError:
                pass
            except ml.NoHealthyBackendError:
                time.sleep(0.0002)  # out for a moment: let its ejection run out
            except BaseException as error:  # the test reports it
                unexpected.append(error)
                return

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return unexpected


def failing_service(address: str, events: list[ml.Event]) -> Service:
    # Ejections of about a millisecond: each round trip through eject and return
    # is a chance for the threads to race the ejecting one.
    service = Service("s", [address], pipeline=ml.Pipeline(), panic_mode=False,
                      outlier_detection=OutlierDetection(
                          LIMIT, max_ejection_percent=100, base_ejection_seconds=0.0005,
                          max_ejection_seconds=0.001))
    service.add_hook(events.append)
    return service


def check_streaks(service: Service, events: list[ml.Event], exposition: str) -> None:
    endpoint = service._endpoints[0]
    ejected = [e for e in events if type(e).__name__ == "BackendEjected"]
    # The mesh's Prometheus counter saw each ejection once, as the hooks did.
    assert (f'meshlite_backend_ejections_total{{service="s",backend="{endpoint.address}"}} '
            f"{len(ejected)}\n") in exposition
    assert not any(type(e).__name__ == "EjectionSkipped" for e in events)
    assert len(ejected) >= 2
    # Every ejection at exactly the streak configured, none later...
    assert {e.reason.split(" (")[0] for e in ejected} == {  # type: ignore[attr-defined]
        f"{LIMIT} consecutive failures"}
    # ...and every failure counted in one streak: those that reached the limit
    # (ejecting, or finding the backend out already) and the one running now.
    assert (endpoint.errors - endpoint.consecutive_failures) % LIMIT == 0
    assert endpoint.consecutive_failures < LIMIT


def test_threads_failing_at_once_count_every_failure_in_one_streak(
        frequent_thread_switches: None) -> None:
    def down(backend: Backend) -> None:
        raise ConnectionError(f"{backend.address} is down")

    events: list[ml.Event] = []
    service = failing_service("a", events)
    with Mesh([service]) as mesh:
        assert hammer(1000, lambda: mesh.call_sync("s", down)) == []
        exposition = render(mesh)
    check_streaks(service, events, exposition)


def test_threads_failing_over_http_count_every_failure_in_one_streak(
        frequent_thread_switches: None) -> None:
    events: list[ml.Event] = []
    with FakeBackend(status=503) as bad:
        service = failing_service(bad.url, events)
        with Mesh([service]) as mesh, mesh.http_sync("s") as client:
            def get() -> None:
                assert client.get("/x").status_code == 503

            assert hammer(300, get) == []
            exposition = render(mesh)
        assert bad.request_count == service._endpoints[0].errors
    check_streaks(service, events, exposition)


def test_a_success_enters_the_failure_rate_window_with_its_count(
        frequent_thread_switches: None) -> None:
    # A window longer than the run: every success stays in it, so under the
    # endpoint's lock the window holds exactly one entry per attempt counted. A
    # success's window entry moves with its count, in the same acquisition of the
    # lock, so no reader ever sees one without the other.
    service = Service("s", ["a"], pipeline=ml.Pipeline(), outlier_detection=OutlierDetection(
        None, failure_rate=1.0, failure_rate_window=1_000_000))
    endpoint = service._endpoints[0]
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with endpoint._lock:
                window = len(endpoint.outcomes or ())
                if window != endpoint.requests:
                    seen.append((window, endpoint.requests))

    watcher = threading.Thread(target=watch)
    with Mesh([service]) as mesh:
        watcher.start()
        try:
            assert hammer(1000, lambda: mesh.call_sync("s", lambda backend: None)) == []
        finally:
            done.set()
            watcher.join(60)
    assert seen == []
    assert endpoint.requests == THREADS * 1000 == len(endpoint.outcomes or ())
    assert not any(endpoint.outcomes or ())
