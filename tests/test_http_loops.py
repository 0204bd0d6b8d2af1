"""mesh.http() used from several event loops, each in its own thread (a sync program
that runs ``asyncio.run`` per job against one mesh opened with ``with mesh``): the
connections of a loop are closed on that loop as it ends, those of a loop closed
without its end (``loop.close()`` alone) once it has closed, not left to the garbage
collector. Each test runs on asyncio's loop and on uvloop's (the loop uvicorn
installs), but those of loops closed without their end (uvloop's ``close()`` closes
what is left open itself). Client sockets are counted in /proc/self/fd; nothing may
be logged at ERROR (a transport's "Fatal error", a loop's exception handler)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading

import aiohttp
import pytest
from _loop_kinds import (
    WAIT,
    loop_kind,  # noqa: F401  (a fixture)
    no_collector,  # noqa: F401  (autouse: no collector closes sockets)
    nothing_logged_at_error,  # noqa: F401  (autouse)
    on_a_thread,
)
from _sockets import client_sockets

import meshlite as ml
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.skipif(sys.platform != "linux",
                                reason="counts sockets in /proc/self/fd")


def in_a_loop_of_its_own(mesh: ml.Mesh, requests: int, outcomes: list[object]) -> None:
    """Send ``requests`` concurrent requests from a new event loop (in this thread);
    append their statuses, or the error, to ``outcomes``."""
    try:
        outcomes.append(asyncio.run(answers(mesh, requests)))
    except Exception as error:
        outcomes.append(error)


def run_in_a_loop_of_its_own(mesh: ml.Mesh, requests: int) -> None:
    """Send ``requests`` concurrent requests from a new event loop in a new thread."""
    outcomes: list[object] = []
    on_a_thread(lambda: in_a_loop_of_its_own(mesh, requests, outcomes))
    assert outcomes == [[200] * requests]


def closed_without_its_end(mesh: ml.Mesh, requests: int) -> None:
    """Send ``requests`` concurrent requests from a new event loop of asyncio's in a
    new thread, closed by ``close()`` alone (no ``shutdown_asyncgens``: the end
    ``asyncio.run`` gives a loop). asyncio's whatever the policy: uvloop's
    ``close()`` closes what was left open on its loop itself, each with a
    ``ResourceWarning`` (an error here, which hung it)."""

    def run() -> None:
        loop = asyncio.SelectorEventLoop()
        try:
            assert loop.run_until_complete(answers(mesh, requests)) == [200] * requests
        finally:
            loop.close()

    on_a_thread(run)


async def answers(mesh: ml.Mesh, requests: int) -> list[int]:
    """Statuses of ``requests`` concurrent requests sent on the running loop."""
    client = mesh.http("users")
    return [a.status_code for a in
            await asyncio.gather(*(client.get("/") for _ in range(requests)))]


WIRES = pytest.mark.parametrize("http_pool", [None, {"retries": 1}],
                                ids=["aiohttp", "httpcore"])
"""Each test on both async wires: aiohttp's (the default) and httpcore's (``retries``
is an option only httpcore honours)."""


def one_service(backend: FakeBackend, http_pool: dict[str, object] | None) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [backend.url], pipeline=ml.Pipeline(),
                               http_pool=http_pool)])


@WIRES
def test_closing_the_mesh_closes_connections_of_loops_closed_without_their_end(
        http_pool: dict[str, object] | None) -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend, http_pool)
        with mesh:
            closed_without_its_end(mesh, 3)
            assert client_sockets([backend.port]) == 3  # kept alive in the pool
        assert client_sockets([backend.port]) == 0


@WIRES
def test_a_new_loop_closes_the_connections_of_loops_closed_without_their_end(
        http_pool: dict[str, object] | None) -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend, http_pool)
        with mesh:
            for _ in range(5):
                closed_without_its_end(mesh, 3)
                # Only the last loop's connections are open: each loop that closed
                # had its own closed when the next one came.
                assert client_sockets([backend.port]) == 3


@WIRES
@pytest.mark.usefixtures("loop_kind")
def test_loops_one_after_another_and_at_once_all_get_answers(
        http_pool: dict[str, object] | None) -> None:
    # Each loop's connections are closed on that loop as it ends. (On uvloop, a loop's
    # close() hung on the connections the pools kept open on it (aiohttp's) or failed
    # with OSError(EBUSY) (httpcore's), and what closed them from another thread logged
    # "Fatal error on transport ... Event loop is closed".)
    with FakeBackend() as backend:
        mesh = one_service(backend, http_pool)
        with mesh:
            for _ in range(3):
                run_in_a_loop_of_its_own(mesh, 3)
                assert client_sockets([backend.port]) == 0
            outcomes: list[object] = []
            threads = [threading.Thread(target=in_a_loop_of_its_own, args=(mesh, 3, outcomes),
                                        daemon=True)
                       for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
                assert not thread.is_alive()
            assert outcomes == [[200] * 3] * 4
            assert client_sockets([backend.port]) == 0


@WIRES
@pytest.mark.usefixtures("loop_kind")
def test_closing_the_mesh_closes_a_stopped_loops_connections_when_it_runs_again(
        http_pool: dict[str, object] | None) -> None:
    # A program that runs its loop job by job (run_until_complete) leaves it stopped
    # between jobs: the mesh, closed meanwhile, hands the close to that loop, whose
    # connections' callbacks can only run there.
    loop = asyncio.new_event_loop()
    try:
        with FakeBackend() as backend:
            mesh = one_service(backend, http_pool)
            with mesh:
                assert loop.run_until_complete(answers(mesh, 3)) == [200] * 3
            assert client_sockets([backend.port]) == 3  # its loop has not run since
            for _ in range(100):  # the loop's next job (at most a second)
                loop.run_until_complete(asyncio.sleep(0.01))
                if not client_sockets([backend.port]):
                    break
            assert client_sockets([backend.port]) == 0
    finally:
        loop.close()


@WIRES
@pytest.mark.usefixtures("loop_kind")
def test_closing_the_mesh_on_one_loop_closes_its_own_connections_and_others_on_theirs(
        http_pool: dict[str, object] | None) -> None:
    # Another thread's loop is busy (blocked in a callback) when this one closes the
    # mesh: this loop's connections are closed when aclose returns, that loop's once
    # it runs again.
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()

    async def main() -> None:
        async with FakeBackend() as backend:
            mesh = one_service(backend, http_pool)
            async with mesh:
                assert await answers(mesh, 3) == [200] * 3
                there = asyncio.run_coroutine_threadsafe(answers(mesh, 2), other)
                assert await asyncio.wrap_future(there) == [200] * 2
                assert client_sockets([backend.port]) == 5
                release = threading.Event()
                other.call_soon_threadsafe(release.wait, 10.0)
            assert client_sockets([backend.port]) == 2  # the other loop's, still blocked
            release.set()
            for _ in range(100):  # at most a second
                if not client_sockets([backend.port]):
                    break
                await asyncio.sleep(0.01)
            assert client_sockets([backend.port]) == 0

    try:
        on_a_thread(lambda: asyncio.run(main()))
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(WAIT)
        other.close()


@pytest.mark.usefixtures("loop_kind")
def test_a_sync_close_wakes_a_mesh_aiohttp_body_read_on_another_threads_loop() -> None:
    # The sessions were closed on a loop of the close's own: the reader on its
    # thread's loop was never woken, and waited until a timer of its loop fired (the
    # session's five-minute total, by default).
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def drip() -> None:  # the head at once, then the body a byte at a time, slowly
        conn, _ = listener.accept()
        with conn:
            while b"\r\n\r\n" not in conn.recv(65536):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):
                if done.wait(0.2):
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(b"x")

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    mesh = ml.Mesh([ml.Service("drip", [f"http://127.0.0.1:{port}"], pipeline=ml.Pipeline())])
    reading = threading.Event()
    outcome: list[BaseException | bytes] = []

    async def read() -> None:
        try:
            async with mesh.aiohttp("drip").get("/") as response:
                reading.set()
                outcome.append(await response.read())
        except Exception as error:
            outcome.append(error)

    worker = threading.Thread(target=asyncio.run, args=(read(),), daemon=True)
    try:
        with mesh:
            worker.start()
            assert reading.wait(10.0)
        worker.join(5.0)
        assert not worker.is_alive(), "the reader was not woken by the close"
        assert len(outcome) == 1
        assert isinstance(outcome[0], aiohttp.ClientConnectionError)
        assert "the mesh was closed" in str(outcome[0])
    finally:
        done.set()
        worker.join(30.0)
        server.join(10.0)
        listener.close()
