"""Metrics of a worker forked from a process that had made calls (a Celery prefork
pool, ``multiprocessing`` with the fork start method, ``preload_app``): with a shared
directory each process's calls are counted once, in its own file; the child's file
does not repeat the calls its parent made before the fork."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _forked import in_child

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
