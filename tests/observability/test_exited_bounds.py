"""Workers that exit one after the other, each with the backends discovery gave it,
the callers that named themselves to it, the operations named at run time and the
error kinds it met: the exited workers' file of the shared directory keeps them
within the bounds a live worker keeps its own to (no removed backend's series, 256
callers, 256 operations per service and 64 errors by name, the rest under
``(other)``), with every total kept, so it does not grow with each restart
(gunicorn's ``max_requests``, a deploy a day)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _system import wait_for

import meshlite as ml
import meshlite.asgi
from meshlite.observability import render

WORKERS = 12
CALLERS = 100  # forged names per worker: 1,200 in all, past the 256 kept
ERRORS = 70  # error kinds per worker (its series keeps 64 and "(other)")
OPERATIONS = 100  # operations named at run time per worker (ml.Metrics keeps 256)
DEAD = 2**22 + 100  # pids no process has: dead workers


async def app(scope: dict, receive: object, send: object) -> None:  # pragma: no cover
    raise AssertionError("not called: requests are counted on the stats directly")


def series(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = dict(p.split("=", 1) for p in labels.rstrip("}").split('",') if p)
        out.append((name, {k: v.strip('"') for k, v in pairs.items()}, float(value)))
    return out


def total(text: str, name: str) -> float:
    return sum(v for n, _, v in series(text) if n == name)


def labels(text: str, label: str, name: str | None = None) -> set[str]:
    return {lb[label] for n, lb, _ in series(text) if label in lb and name in (None, n)}


def dead_files(shared: Path) -> list[Path]:
    return [p for p in shared.glob("meshlite-*.json") if p.name.split("-")[1].isdigit()
            and int(p.name.split("-")[1]) >= DEAD]


def worker(shared: Path, k: int) -> None:
    """Worker ``k``'s life: its own backends, callers and error kinds; then it exits
    (its file renamed to a dead pid's, written long ago)."""
    backends = [f"http://10.1.{k}.{j}:8080" for j in range(3)]
    mesh = ml.Mesh([ml.Service("users", backends, pipeline=ml.Pipeline())], name="shop")
    middleware = meshlite.asgi.MeshMiddleware(app, mesh=mesh)
    for j in range(CALLERS):
        middleware.stats.record("*", "GET", 500 if j % 2 else 200, 0.001, f"forged-{k}-{j}",
                                time.monotonic())
    for j in range(ERRORS):
        kind = type(f"Remote{k}x{j}Error", (RuntimeError,), {})

        def fail(backend: ml.Backend, error: type[Exception] = kind) -> None:
            raise error(backend.address)

        with pytest.raises(RuntimeError):
            mesh.call_sync("users", fail)
    for _ in range(5):
        mesh.call_sync("users", lambda backend: backend.address)
    metrics = ml.Metrics()  # calls outside the mesh, in its registry
    assert mesh.metrics is not None
    mesh.metrics.register(metrics)
    pipeline = ml.Pipeline(metrics)
    for j in range(OPERATIONS):
        def operation() -> int:
            return 1

        operation.__qualname__ = f"fetch_{k}_{j}"
        pipeline.call(operation)
    render(mesh)  # a scrape writes its file
    assert mesh.metrics is not None
    assert mesh.metrics.shared is not None
    dead = shared / f"meshlite-{DEAD + k}-1.json"
    os.replace(mesh.metrics.shared.path, dead)
    os.utime(dead, (0, 0))


def test_the_exited_workers_file_keeps_a_live_workers_bounds_and_every_total(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(tmp_path))
    exited = tmp_path / "meshlite-exited.json"
    sizes = []
    for batch in range(2):
        for k in range(batch * WORKERS // 2, (batch + 1) * WORKERS // 2):
            worker(tmp_path, k)
        # The live worker, whose backends discovery has moved on to.
        live = ml.Mesh([ml.Service("users", ["http://10.2.0.1:8080"], pipeline=ml.Pipeline())],
                       name="shop")
        with live:  # open: it writes its file and folds the dead workers' ones
            wait_for(lambda: not dead_files(tmp_path), 30, "the dead workers' files folded")
            text = render(live)
        sizes.append(exited.stat().st_size)

    workers = WORKERS
    # Every total is kept: calls, failed calls, attempts, callers' requests and errors.
    assert total(text, "meshlite_requests_total") == workers * (ERRORS + 5)
    assert total(text, "meshlite_request_errors_total") == workers * ERRORS
    assert total(text, "meshlite_server_caller_requests_total") == workers * CALLERS
    assert total(text, "meshlite_server_caller_errors_total") == workers * CALLERS / 2
    # Within a live worker's bounds: only the backends a live worker has...
    assert labels(text, "backend") == {"http://10.2.0.1:8080"}
    # ...256 callers by name and (other), the same in both caller families...
    callers = labels(text, "caller", "meshlite_server_caller_requests_total")
    assert len(callers) == 257
    assert "(other)" in callers
    assert labels(text, "caller", "meshlite_server_caller_errors_total") <= callers
    # ...256 operations of a service by name and (other)...
    operations = labels(text, "operation", "meshlite_operation_requests_total")
    assert len(operations) == 257
    assert "(other)" in operations
    assert total(text, "meshlite_operation_requests_total") == workers * OPERATIONS
    # ...and 64 error kinds by name and (other).
    errors = labels(text, "error", "meshlite_request_errors_total")
    assert len(errors) == 65
    assert "(other)" in errors
    # So the exited file does not grow with each worker that exits.
    assert sizes[1] <= sizes[0] * 1.1
