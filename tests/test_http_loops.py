"""mesh.http() used from several event loops, each in its own thread (a sync program
that runs ``asyncio.run`` per job against one mesh opened with ``with mesh``): the
connections a loop left in the shared pools are closed once that loop has ended,
not left to the garbage collector. Client sockets are counted in /proc."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Iterator

import pytest
from test_http_retire import client_sockets

import meshlite as ml
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.skipif(sys.platform != "linux",
                                reason="counts sockets in /proc/self/fd and /proc/net/tcp")


@pytest.fixture(autouse=True)
def no_collector() -> Iterator[None]:
    """Sockets a cycle holds are closed when the collector runs: keep it from running,
    so only the mesh can have closed them."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def in_a_loop_of_its_own(mesh: ml.Mesh, requests: int, outcomes: list[object]) -> None:
    """Send ``requests`` concurrent requests from a new event loop (in this thread);
    append their statuses, or the error, to ``outcomes``."""

    async def main() -> list[int]:
        client = mesh.http("users")
        answers = await asyncio.gather(*(client.get("/") for _ in range(requests)))
        return [a.status_code for a in answers]

    try:
        outcomes.append(asyncio.run(main()))
    except Exception as error:
        outcomes.append(error)


def run_in_a_loop_of_its_own(mesh: ml.Mesh, requests: int) -> None:
    """Send ``requests`` concurrent requests from a new event loop in a new thread."""
    outcomes: list[object] = []
    thread = threading.Thread(target=in_a_loop_of_its_own, args=(mesh, requests, outcomes))
    thread.start()
    thread.join()
    assert outcomes == [[200] * requests]


WIRES = pytest.mark.parametrize("http_pool", [None, {"retries": 1}],
                                ids=["aiohttp", "httpcore"])
"""Each test on both async wires: aiohttp's (the default) and httpcore's (``retries``
is an option only httpcore honours)."""


def one_service(backend: FakeBackend, http_pool: dict[str, object] | None) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline(),
                               http_pool=http_pool)])


@WIRES
def test_closing_the_mesh_closes_connections_of_loops_that_ended(
        http_pool: dict[str, object] | None) -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend, http_pool)
        with mesh:
            run_in_a_loop_of_its_own(mesh, 3)
            assert client_sockets([backend.port]) == 3  # kept alive in the pool
        assert client_sockets([backend.port]) == 0


@WIRES
def test_a_new_loop_closes_the_connections_of_loops_that_ended(
        http_pool: dict[str, object] | None) -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend, http_pool)
        with mesh:
            for _ in range(5):
                run_in_a_loop_of_its_own(mesh, 3)
                # Only the last loop's connections are open: each loop that ended
                # had its own closed when the next one came.
                assert client_sockets([backend.port]) == 3


@WIRES
def test_loops_one_after_another_and_at_once_all_get_answers(
        http_pool: dict[str, object] | None) -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend, http_pool)
        with mesh:
            for _ in range(3):
                run_in_a_loop_of_its_own(mesh, 3)
            outcomes: list[object] = []
            threads = [threading.Thread(target=in_a_loop_of_its_own, args=(mesh, 3, outcomes))
                       for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert outcomes == [[200] * 3] * 4
