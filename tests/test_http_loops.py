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


def run_in_a_loop_of_its_own(mesh: ml.Mesh, requests: int) -> None:
    """Send ``requests`` concurrent requests from a new event loop in a new thread."""

    async def main() -> None:
        client = mesh.http("users")
        answers = await asyncio.gather(*(client.get("/") for _ in range(requests)))
        assert [a.status_code for a in answers] == [200] * requests

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join()


def test_closing_the_mesh_closes_connections_of_loops_that_ended() -> None:
    with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline())])
        with mesh:
            run_in_a_loop_of_its_own(mesh, 3)
            assert client_sockets([backend.port]) == 3  # kept alive in the pool
        assert client_sockets([backend.port]) == 0


def test_a_new_loop_closes_the_connections_of_loops_that_ended() -> None:
    with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline())])
        with mesh:
            for _ in range(5):
                run_in_a_loop_of_its_own(mesh, 3)
                # Only the last loop's connections are open: each loop that ended
                # had its own closed when the next one came.
                assert client_sockets([backend.port]) == 3
