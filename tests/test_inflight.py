"""In-flight lists (meshlite._inflight): what the mesh lifecycle and every call series
count calls in flight with."""

from __future__ import annotations

import sys
import threading
import time

import pytest

import meshlite as ml
from meshlite import _inflight


def test_a_new_list_counts_no_call() -> None:
    calls = _inflight.calls_list()
    assert _inflight.count(calls) == 0
    calls.append(None)
    calls.append(None)
    assert _inflight.count(calls) == 2
    calls.pop()
    calls.pop()
    assert _inflight.count(calls) == 0


def test_one_call_at_a_time_never_resizes_the_list() -> None:
    # The point of the placeholders: a list going from empty to one item and back
    # reallocates its storage each time, a padded one keeps its size.
    calls = _inflight.calls_list()
    calls.append(None)
    calls.pop()
    size = sys.getsizeof(calls)
    for _ in range(100):
        calls.append(None)
        assert sys.getsizeof(calls) == size
        calls.pop()
        assert sys.getsizeof(calls) == size
    bare: list[None] = []
    bare.append(None)
    grown = sys.getsizeof(bare)
    bare.pop()
    assert sys.getsizeof(bare) != grown, "CPython no longer shrinks lists: revisit PAD"


def test_threads_appending_and_popping_lose_no_count() -> None:
    calls = _inflight.calls_list()

    def churn() -> None:
        for _ in range(20_000):
            calls.append(None)
            calls.pop()

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _inflight.count(calls) == 0


def test_a_mesh_counts_its_calls_in_flight_with_and_without_metrics() -> None:
    for metrics in (True, False):
        mesh = ml.Mesh([ml.Service("svc", ["127.0.0.1"], pipeline=ml.Pipeline())],
                       metrics=metrics)
        seen: list[int] = []

        def fn(backend: object, mesh: ml.Mesh = mesh, seen: list[int] = seen) -> None:
            seen.append(mesh.in_flight)

        mesh.call_sync("svc", fn)
        mesh.call_sync("svc", lambda b, m=mesh: m.call_sync("svc", fn))
        assert seen == [1, 2], metrics
        assert mesh.in_flight == 0


@pytest.mark.parametrize("metrics", [True, False])
def test_closing_refuses_and_drains_alike_with_and_without_metrics(metrics: bool) -> None:
    # The lifecycle keeps its own in-flight list: closing waits for the call running
    # and refuses new ones whether or not the mesh records metrics.
    mesh = ml.Mesh([ml.Service("svc", ["127.0.0.1"], pipeline=ml.Pipeline())],
                   metrics=metrics, drain_timeout=10.0)
    started, release = threading.Event(), threading.Event()

    def slow(backend: object) -> str:
        started.set()
        release.wait(10)
        return "done"

    results: list[str] = []
    with mesh:
        caller = threading.Thread(target=lambda: results.append(mesh.call_sync("svc", slow)))
        caller.start()
        started.wait(10)
        closer = threading.Thread(target=mesh.close)
        closer.start()
        while mesh._state != "closing":
            time.sleep(0.001)
        with pytest.raises(ml.MeshClosedError):
            mesh.call_sync("svc", lambda b: "late")
        assert closer.is_alive()  # still draining the call in flight
        release.set()
        caller.join(10)
        closer.join(10)
    assert results == ["done"]
    assert mesh.in_flight == 0
    if metrics:
        assert mesh.metrics is not None
        assert mesh.metrics.call_counts("svc")[:2] == (1, 0)  # the refused call: not run
