"""A mesh opened before a fork (``preload_app`` with the mesh opened at import, a
Celery prefork pool, ``multiprocessing`` with the fork start method): the child's
copy is not open (the parent's loop thread and components are not copied), its
calls work, closing it returns at once, and opening it in the child starts the
child's own health checks and metrics writer; the parent's mesh goes on."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from _forked import in_child

import meshlite as ml
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def _mesh(backend: FakeBackend) -> ml.Mesh:
    check = ml.HttpHealthCheck(path="/health", interval=0.05)
    return ml.Mesh([ml.Service("users", [backend.url], health_check=check)])


def test_a_mesh_open_at_the_fork_is_closed_in_the_child_without_waiting() -> None:
    with FakeBackend() as backend:
        mesh = _mesh(backend)
        with mesh:
            mesh.http_sync("users").get("/")

            def child() -> int:
                assert mesh.http_sync("users").get("/").status_code == 200
                mesh.close()  # hung for good: it waited on the parent's loop thread
                return 1 if mesh.state == "closed" else 0

            assert in_child(child) == 1
            assert mesh.is_open  # the parent's mesh goes on
            probes = backend.request_count
            deadline = time.monotonic() + 5.0  # a round every 50 ms; a loaded machine's later
            while backend.request_count == probes and time.monotonic() < deadline:
                time.sleep(0.01)
            assert backend.request_count > probes  # its health checks still run
        assert mesh.state == "closed"


def test_opening_the_childs_mesh_starts_the_childs_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    with FakeBackend() as backend:
        mesh = _mesh(backend)
        with mesh:
            assert {"meshlite-mesh", "meshlite-multiproc"} <= _threads()

            def child() -> int:
                assert {"meshlite-mesh", "meshlite-multiproc"}.isdisjoint(_threads())
                assert mesh.state == "idle"  # the parent's components do not run here
                with mesh:
                    deadline = time.monotonic() + 5.0
                    while (not list(tmp_path.glob(f"meshlite-{os.getpid()}-*.json"))
                           and time.monotonic() < deadline):
                        time.sleep(0.05)  # written by the child's own writer thread
                    assert list(tmp_path.glob(f"meshlite-{os.getpid()}-*.json"))
                    assert {"meshlite-mesh", "meshlite-multiproc"} <= _threads()
                    checker = mesh.service("users").components[0]
                    rounds = checker.rounds
                    deadline = time.monotonic() + 5.0  # a round every 50 ms, or later
                    while checker.rounds == rounds and time.monotonic() < deadline:
                        time.sleep(0.01)
                    assert checker.rounds > rounds  # the child's health checks run
                return 1

            assert in_child(child) == 1
            assert mesh.is_open


def test_the_parents_calls_in_flight_are_not_the_childs() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])], drain_timeout=5.0)
    entered, release = threading.Event(), threading.Event()

    def slow(backend: object) -> int:
        entered.set()
        release.wait(10.0)
        return 1

    caller = threading.Thread(target=mesh.call_sync, args=("users", slow))
    caller.start()
    assert entered.wait(5.0)
    endpoint = mesh.service("users").endpoints[0]
    assert mesh.in_flight == endpoint.in_flight == 1  # running when the fork comes

    def child() -> int:
        assert mesh.in_flight == endpoint.in_flight == 0  # it never ends here
        assert mesh.call_sync("users", lambda backend: 1) == 1
        assert endpoint.in_flight == 0  # (what least-requests balancing reads)
        start = time.monotonic()
        mesh.close()  # waited drain_timeout for the parent's call
        return 1 if time.monotonic() - start < 1.0 else 0

    try:
        assert in_child(child) == 1
    finally:
        release.set()
        caller.join()
    assert mesh.in_flight == endpoint.in_flight == 0
    mesh.close()
