"""Metrics of a worker forked from a process that had made calls (a Celery prefork
pool, ``multiprocessing`` with the fork start method, ``preload_app``): with a shared
directory each process's calls are counted once, in its own file; the child's file
does not repeat the calls its parent made before the fork."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from _forked import in_child, in_child_meanwhile

import meshlite as ml
from meshlite.observability import render
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")


def _value(text: str, line_start: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(line_start)]
    assert len(found) == 1, found
    return float(found[0].rsplit(" ", 1)[1])


def _requests_in_file(path: Path) -> float:
    for name, _kind, _help, samples in json.loads(path.read_text()):
        if name == "meshlite_requests_total":
            return float(sum(value for _suffix, _labels, value in samples))
    return 0.0


def test_each_process_counts_its_own_calls_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url])])
        client = mesh.http_sync("users")
        for _ in range(5):
            client.get("/")

        def child() -> int:
            for _ in range(2):
                client.get("/")
            text = render(mesh)  # writes the child's file, reads every worker's
            return int(_value(text, 'meshlite_requests_total{service="users"}'))

        # The host made 5 + 2 calls: the child's own 2, and the parent's 5 read
        # from the parent's file (the parent's render writes it first).
        render(mesh)
        assert in_child(child) == 7
        client.get("/")
        host = _value(render(mesh), 'meshlite_requests_total{service="users"}')
        assert host == 8  # was 13: the child's file repeated the parent's 5
        files = {int(p.name.split("-")[1]): _requests_in_file(p)
                 for p in tmp_path.glob("meshlite-*.json")}
        assert files.pop(os.getpid()) == 6
        assert list(files.values()) == [2]  # the child's file: its own calls
        mesh.close()


def test_each_worker_pushes_its_own_calls_over_otlp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A receiver sums the workers' pushes (each its own service.instance.id); a push of
    # the shared directory's host view counted every call once per worker.
    from otlp_receiver import OtlpReceiver

    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    with FakeBackend() as backend, OtlpReceiver() as receiver:
        mesh = ml.Mesh([ml.Service("users", [backend.url])])
        client = mesh.http_sync("users")
        for _ in range(5):
            client.get("/")
        render(mesh)  # the parent's file: the host view has its calls

        def push(calls: int) -> int:
            for _ in range(calls):
                client.get("/")
            render(mesh)  # writes this process's file, as an open mesh does
            with ml.telemetry.export_metrics(mesh, otlp_endpoint=receiver.url,
                                             interval=3600.0) as export:
                return int(export.force_flush())

        assert in_child(lambda: push(2)) == 1
        assert push(1) == 1  # the parent, after the fork: 6 of its own
        assert _value(render(mesh), 'meshlite_requests_total{service="users"}') == 8
        pushed = [p for p in receiver.points if p.metric == "meshlite.calls"]
        by_instance = {p.resource["service.instance.id"]: p.value for p in pushed}
        assert sorted(by_instance.values()) == [2, 6]  # was [8, 8]


def _takes(directory: str) -> bool:
    """Whether a thread of this process takes the files lock within 5 s."""
    from meshlite.observability._worker_files import locked

    taken = threading.Event()

    def take() -> None:
        with locked(directory, exclusive=True):
            taken.set()

    threading.Thread(target=take, daemon=True).start()
    return taken.wait(5.0)


def test_a_worker_forked_while_the_files_lock_was_held_takes_it_once_let_go(
        tmp_path: Path) -> None:
    # The parent's writer folding dead workers' files holds the lock as the master
    # forks (a mesh opened before the fork starts its writer, which folds first).
    # Held as an flock, the child's copy of the descriptor kept it held: the child's
    # own writer waited on it for good (closing its mesh waited 5 s for the writer),
    # and so did the parent's once it let go, for as long as the child lived.
    from meshlite.observability._worker_files import locked

    directory = str(tmp_path)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locked(directory, exclusive=True):
            held.set()
            release.wait(15.0)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5.0)
    parent_took: list[bool] = []

    def parent() -> None:  # while the child runs, holding what it inherited
        release.set()
        holder.join()
        parent_took.append(_takes(directory))

    def child(wait: Callable[[], None]) -> int:
        wait()
        return 1 if _takes(directory) else 0

    assert in_child_meanwhile(child, parent) == 1
    assert parent_took == [True]
