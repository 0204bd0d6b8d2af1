"""Reading a mesh (``mesh.snapshot()``, ``mesh.health()``, a metrics scrape) on one
thread while another thread changes its services (a config reload applied from a
sync app, ``mesh.register()``, ``service.set_backends()``)."""

from __future__ import annotations

import threading
import traceback
from typing import Any

import meshlite as ml
from meshlite._policy import AsyncHandler, Handler


class HeldBreaker(ml.Policy):
    """Passes calls on; reading its ``state`` (as a snapshot does for each circuit
    breaker) holds the reader until ``release`` is set, ``reading`` set meanwhile."""

    kind = "circuit_breaker"

    def __init__(self) -> None:
        super().__init__()
        self.reading, self.release = threading.Event(), threading.Event()

    @property
    def state(self) -> str:
        self.reading.set()
        assert self.release.wait(30)
        return "closed"

    def wrap(self, call_next: Handler) -> Handler:
        return call_next

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        return call_next


def _in_thread(action: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(action())
        except Exception as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_snapshot_while_another_thread_registers_a_service() -> None:
    held = HeldBreaker()
    mesh = ml.Mesh([ml.Service("a", ["a:1"], pipeline=ml.Pipeline(held)),
                    ml.Service("b", ["b:1"])])
    thread, outcome = _in_thread(mesh.snapshot)
    assert held.reading.wait(30)
    mesh.register(ml.Service("c", ["c:1"]))  # while the snapshot is on "a"
    held.release.set()
    thread.join(30)
    # was: RuntimeError: dictionary changed size during iteration
    assert isinstance(outcome[0], dict)
    assert sorted(outcome[0]) == ["a", "b"]
    assert sorted(mesh.snapshot()) == ["a", "b", "c"]
    assert sorted(mesh.health()) == ["a", "b", "c"]


def test_a_scrape_while_another_thread_replaces_a_services_backends() -> None:
    service = ml.Service("users", ["old:1"])
    mesh = ml.Mesh([service])
    assert mesh.call_sync("users", lambda backend: 1) == 1
    assert mesh.metrics is not None
    scrape = mesh.metrics.collect_local()
    first = next(scrape)  # the counts are read; the rest follows as it is consumed
    thread, outcome = _in_thread(lambda: service.set_backends(["new:1"]))
    thread.join(30)
    assert outcome == [None]
    families = {f.name: f for f in (first, *scrape)}  # was: KeyError ('users', 'new:1')
    requests = families["meshlite_backend_requests_total"].samples
    assert [(s.labels, s.value) for s in requests] == []  # new:1 counts from the next scrape
    after = {f.name: f for f in mesh.metrics.collect_local()}
    assert [s.labels for s in after["meshlite_backend_requests_total"].samples] == [
        (("service", "users"), ("backend", "new:1"))]


def test_reads_never_fail_while_threads_call_and_a_thread_changes_services() -> None:
    # Bounded by counts: readers read until the writer has made its changes.
    mesh = ml.Mesh([ml.Service(f"s{i}", [f"s{i}:1"]) for i in range(8)])
    done = threading.Event()
    failures: list[str] = []

    def read() -> None:
        while not done.is_set():
            try:
                mesh.snapshot()
                mesh.health()
                assert mesh.metrics is not None
                list(mesh.metrics.collect())
            except Exception as error:  # handed to the test, with where it was raised
                failures.append("".join(traceback.format_exception(error)))
                return

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for round_ in range(200):
        mesh.register(ml.Service(f"n{round_}", [f"n{round_}:1"]))
        mesh.service(f"s{round_ % 8}").set_backends([f"s{round_ % 8}-{round_}:1"])
    done.set()
    for reader in readers:
        reader.join(30)
    assert failures == []


