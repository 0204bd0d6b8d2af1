"""Isolation and leaks: meshes share no state, and opening and closing many of them
(with real loopback backends, HTTP pools, health checks) gives back every thread,
file descriptor, task and byte.

The leak tests are the slowest of the suite's unit tests (a few seconds): a leak of
one small object per mesh only shows over many meshes.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import pkgutil
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import meshlite as ml
from meshlite.testing import BackendFactory, FakeBackend

WARM_UP = 50
CYCLES = 1_000
HTTP_EVERY = 10
"""One cycle in HTTP_EVERY also sends a real HTTP request through the mesh's pools
(100 of the 1,000): a request costs ten times a mesh, and 100 are plenty to show a
leaked connection, client or socket."""
ASYNC_CYCLES = 50
"""Async meshes with health checks and HTTP clients measured (each costs ~20 ms)."""
MEMORY_SLACK = 128 * 1024
"""Bytes the traced memory may grow by over CYCLES meshes (< 131 bytes a mesh): room
for the interpreter's own caches (interned strings, free lists, the first use of a
code path), far below any per-mesh leak: one mesh with its service and pipeline is
kilobytes, an HTTP client with its pool tens of kilobytes."""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fds_settle(limit: int) -> int:
    """Open descriptors once they are at most ``limit``, or after 10 seconds: the fake
    backends' server threads close their side of a connection a moment after the
    client closed its own, and later still on a loaded machine (2 seconds were too
    short next to three other test runs: each connection's server thread still held
    its read buffer, 3.9 MB over 50 meshes, counted as a leak)."""
    deadline = time.monotonic() + 10.0
    while open_fds() > limit and time.monotonic() < deadline:
        time.sleep(0.01)  # the closing happens in other threads
    return open_fds()


def threads() -> set[int | None]:
    return {t.ident for t in threading.enumerate()}


def new_threads(before: set[int | None]) -> list[str]:
    """Threads alive now that were not before (compared by identity, not by count:
    a thread an earlier test left behind may end meanwhile)."""
    return [t.name for t in threading.enumerate() if t.ident not in before]


@pytest.fixture(scope="module")
def backends() -> Iterator[list[FakeBackend]]:
    factory = BackendFactory()
    try:
        yield [factory(), factory()]
    finally:
        factory.close()


def measured(cycle: Callable[[], None], cycles: int, warm_up: int) -> tuple[int, str]:
    """Run ``cycle`` ``warm_up`` times, then ``cycles`` times under tracemalloc; the
    growth of traced memory in bytes, and the top allocation sites of that growth."""
    fds = open_fds()
    tracemalloc.start(1)  # one frame: deeper tracebacks make each cycle several times slower
    try:
        for _ in range(warm_up):
            cycle()
        fds_settle(fds)  # no server thread mid-read of a closing connection (its buffer)
        gc.collect()
        before, baseline = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]
        for _ in range(cycles):
            cycle()
        fds_settle(fds)
        gc.collect()
        after, current = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return growth(before, after, current - baseline)


def growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, traced: int
           ) -> tuple[int, str]:
    """The ``traced`` growth between two snapshots less one-off resizes, and the top
    allocation sites of it. A site that grew by one or two blocks larger than the
    slack is a table resized once (the interned strings, say, or the two fork
    registries of ``meshlite._fork``, which share a line of ``weakref``), large
    because of what the tests before this one made: 3.9 MB in one block at an event
    loop's creation, 148 KB in two for the registries, in whole-suite runs. A leak is
    a block a cycle, hundreds over the cycles."""
    stats = after.compare_to(before, "traceback")
    resized = [s for s in stats if s.count_diff in (1, 2) and s.size_diff > MEMORY_SLACK]
    top = [s for s in stats if s not in resized][:5]
    report = "\n".join(f"{stat.size_diff:+} B, {stat.count_diff:+} blocks: "
                       + "".join(stat.traceback.format()) for stat in top)
    return traced - sum(s.size_diff for s in resized), report


def module_containers() -> dict[str, int]:
    """The size of every module-level dict, list or set of meshlite."""
    sizes = {}
    for info in pkgutil.walk_packages(ml.__path__, "meshlite."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra (the dashboard's starlette) is missing
            continue
        for name, value in vars(module).items():
            if isinstance(value, dict | list | set) and not name.startswith("__"):
                sizes[f"{info.name}.{name}"] = len(value)
    return sizes


# -- one mesh's state is its own ---------------------------------------------------------


def two_meshes() -> tuple[ml.Mesh, ml.Mesh]:
    def service() -> ml.Service:
        breaker = ml.CircuitBreaker(failure_rate=0.5, window=4, min_calls=2, open_seconds=60.0)
        return ml.Service("users", ["a", "b"], pipeline=ml.Pipeline(breaker),
                          outlier_detection=ml.OutlierDetection(consecutive_failures=1,
                                                                max_ejection_percent=100))

    return ml.Mesh([service()]), ml.Mesh([service()])


def fail(backend: ml.Backend) -> Any:
    raise ConnectionError(f"{backend.address} is down")


def test_failures_in_one_mesh_leave_another_untouched() -> None:
    first, second = two_meshes()
    for _ in range(2):
        with pytest.raises((ConnectionError, ml.CircuitOpenError)):
            first.call_sync("users", fail)
    assert first.health()["users"].available == 0  # every backend ejected, breaker open
    assert second.call_sync("users", lambda backend: "ok") == "ok"
    assert second.health()["users"].status == "healthy"
    assert second.snapshot()["users"].errors == 0
    assert [e.requests for e in second.service("users").endpoints] in ([1, 0], [0, 1])


def test_overrides_hooks_and_closing_are_per_mesh() -> None:
    first, second = two_meshes()
    seen: list[ml.Event] = []
    first.add_hook(seen.append)
    fake = object()
    with first.override("users", fake):
        assert first.call_sync("users", lambda backend: backend) is fake
        assert second.call_sync("users", lambda backend: backend.address) in ("a", "b")
    first.close()
    with pytest.raises(ml.MeshClosedError):
        first.call_sync("users", lambda backend: None)
    assert second.call_sync("users", lambda backend: "open") == "open"
    with pytest.raises(ConnectionError):
        second.call_sync("users", fail)  # ejects a backend: events on second only
    assert seen == []


def test_chaos_in_one_mesh_leaves_another_untouched() -> None:
    first, second = two_meshes()
    remove = first.service("users").inject(ml.FaultInjection(rate=1.0))
    with pytest.raises(ConnectionError):
        first.call_sync("users", lambda backend: 1)
    assert second.call_sync("users", lambda backend: 2) == 2
    remove()


# -- open and close a thousand meshes ---------------------------------------------------


def test_a_thousand_meshes_give_back_memory_threads_and_fds(
        backends: list[FakeBackend]) -> None:
    urls = [b.url for b in backends]

    count = 0

    def cycle() -> None:
        nonlocal count
        count += 1
        mesh = ml.Mesh([ml.Service("users", urls), ml.Service("orders", urls[:1])])
        with mesh:
            assert mesh.call_sync("orders", lambda backend: backend.address) == urls[0]
            if count % HTTP_EVERY == 0:
                with mesh.http_sync("users") as client:
                    assert client.get("/users/1").status_code == 200
                for b in backends:
                    b.requests.clear()  # the fake's own log is not the mesh's memory
        assert mesh._http is None  # the pools were closed

    for _ in range(HTTP_EVERY):
        cycle()
    alive, fds, containers = threads(), open_fds(), module_containers()
    growth, report = measured(cycle, CYCLES, WARM_UP)
    assert growth < MEMORY_SLACK, f"{growth} bytes more after {CYCLES} meshes:\n{report}"
    assert new_threads(alive) == []
    assert fds_settle(fds) <= fds, os.listdir("/proc/self/fd")
    grown = {k: (containers.get(k, 0), v) for k, v in module_containers().items()
             if v > containers.get(k, 0)}
    assert grown == {}, f"module-level state grew with the meshes: {grown}"


async def test_open_async_meshes_with_health_checks_give_everything_back(
        backends: list[FakeBackend]) -> None:
    urls = [b.url for b in backends]
    check = ml.HttpHealthCheck("/healthz", interval=30.0)

    async def cycle() -> None:
        mesh = ml.Mesh([ml.Service("users", urls, health_check=check)])
        async with mesh, mesh.http("users") as client:
            assert (await client.get("/users/1")).status_code == 200
        for b in backends:
            b.requests.clear()

    await cycle()
    gc.collect()
    alive, fds, tasks = threads(), open_fds(), len(asyncio.all_tasks())
    tracemalloc.start()
    try:
        for _ in range(10):
            await cycle()
        fds_settle(fds)  # no server thread mid-read of a closing connection (its buffer)
        gc.collect()
        before, baseline = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]
        for _ in range(ASYNC_CYCLES):
            await cycle()
        fds_settle(fds)
        gc.collect()
        after, current = tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    grown, report = growth(before, after, current - baseline)
    assert grown < MEMORY_SLACK, f"{grown} bytes more after {ASYNC_CYCLES} meshes:\n{report}"
    assert len(asyncio.all_tasks()) == tasks
    assert new_threads(alive) == []
    assert fds_settle(fds) <= fds, os.listdir("/proc/self/fd")


def test_fake_backends_give_back_their_threads_and_ports() -> None:
    alive, fds = threads(), open_fds()
    for _ in range(20):
        factory = BackendFactory()
        backend = factory(latency=0.0)
        backend.set(down=True)
        backend.set(down=False)
        factory.close()
    assert new_threads(alive) == []
    assert fds_settle(fds) <= fds, os.listdir("/proc/self/fd")
