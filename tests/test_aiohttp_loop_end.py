"""A ``mesh.aiohttp()`` session left open by its user when its event loop ends (a
sync program that runs ``asyncio.run`` per job in threads against one mesh opened
with ``with mesh``) is closed on that loop as it ends, its connections with it; the
mesh's close skips it then. Each test runs on asyncio's loop and on uvloop's, where
the loop's ``close()`` closed the connections left open on it itself, each with a
``ResourceWarning``, and hung where warnings are errors (as here). Client sockets are
counted in /proc/self/fd; nothing may be logged at ERROR, nor a failed close."""

from __future__ import annotations

import asyncio
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

pytestmark = [pytest.mark.skipif(sys.platform != "linux",
                                 reason="counts sockets in /proc/self/fd"),
              pytest.mark.usefixtures("loop_kind")]


def one_service(url: str) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [url], pipeline=ml.Pipeline())])


async def left_open(mesh: ml.Mesh, requests: int,
                    sessions: list[aiohttp.ClientSession]) -> list[int]:
    """Statuses of ``requests`` concurrent requests on a session taken here and not
    closed (appended to ``sessions``)."""
    session = mesh.aiohttp("users")
    sessions.append(session)

    async def status() -> int:
        async with session.get("/") as response:
            return response.status

    return list(await asyncio.gather(*(status() for _ in range(requests))))


def test_a_session_left_open_is_closed_as_its_loop_ends() -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend.url)
        with mesh:
            sessions: list[aiohttp.ClientSession] = []
            for _ in range(3):
                on_a_thread(lambda: asyncio.run(left_open(mesh, 3, sessions)))
                assert sessions[-1].closed
                assert client_sockets([backend.port]) == 0
        assert client_sockets([backend.port]) == 0


def test_sessions_of_loops_at_once_are_each_closed_as_their_loop_ends() -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend.url)
        with mesh:
            sessions: list[aiohttp.ClientSession] = []
            outcomes: list[list[int]] = []

            def job() -> None:
                outcomes.append(asyncio.run(left_open(mesh, 3, sessions)))

            threads = [threading.Thread(target=job, daemon=True) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
                assert not thread.is_alive(), "a loop's close hung"
            assert outcomes == [[200] * 3] * 4
            assert all(session.closed for session in sessions)
            assert client_sockets([backend.port]) == 0


def test_a_response_left_unread_is_ended_as_its_loop_ends() -> None:
    # The session's connection is still taken by a response whose body is coming,
    # which nothing reads any more: the loop's end closes it (its body ended as the
    # mesh's close ends it), not the loop's close.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def drip() -> None:  # the head at once, then nothing until the test ends
        conn, _ = listener.accept()
        with conn:
            while b"\r\n\r\n" not in conn.recv(65536):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx")
            done.wait(WAIT)

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    bodies: list[aiohttp.StreamReader] = []

    async def main() -> None:
        response = await mesh.aiohttp("users").get("/")
        assert response.status == 200
        bodies.append(response.content)

    mesh = one_service(f"http://127.0.0.1:{port}")
    try:
        with mesh:
            on_a_thread(lambda: asyncio.run(main()))
            assert client_sockets([port]) == 0
            assert isinstance(bodies[0].exception(), aiohttp.ClientConnectionError)
    finally:
        done.set()
        server.join(WAIT)
        listener.close()


def test_a_session_its_user_closed_is_left_as_it_is() -> None:
    with FakeBackend() as backend:
        mesh = one_service(backend.url)
        sessions: list[aiohttp.ClientSession] = []

        async def main() -> None:
            assert await left_open(mesh, 2, sessions) == [200] * 2
            await sessions[0].close()
            assert client_sockets([backend.port]) == 0

        with mesh:
            on_a_thread(lambda: asyncio.run(main()))
            assert sessions[0].closed
        assert client_sockets([backend.port]) == 0


def test_closing_the_mesh_on_the_sessions_loop_closes_it_there() -> None:
    # The mesh closes the session; the loop's end then has nothing left to close.
    async def main() -> None:
        async with FakeBackend() as backend:
            sessions: list[aiohttp.ClientSession] = []
            async with one_service(backend.url) as mesh:
                assert await left_open(mesh, 2, sessions) == [200] * 2
                assert client_sockets([backend.port]) == 2
            assert sessions[0].closed
            assert client_sockets([backend.port]) == 0

    on_a_thread(lambda: asyncio.run(main()))


def test_closing_the_mesh_first_closes_the_session_on_its_loop() -> None:
    # The job's loop still runs (its coroutine waits) when the mesh closes from this
    # thread: the session is closed on that loop, which then ends with nothing left.
    with FakeBackend() as backend:
        mesh = one_service(backend.url)
        sessions: list[aiohttp.ClientSession] = []
        taken, closed = threading.Event(), threading.Event()

        async def main() -> None:
            assert await left_open(mesh, 2, sessions) == [200] * 2
            taken.set()
            for _ in range(int(WAIT * 100)):  # closed by the mesh, on this loop
                if sessions[0].closed:
                    closed.set()
                    return
                await asyncio.sleep(0.01)

        errors: list[BaseException] = []

        def job() -> None:
            try:
                asyncio.run(main())
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=job, daemon=True)
        with mesh:
            thread.start()
            assert taken.wait(WAIT)
        assert closed.wait(WAIT)
        thread.join(WAIT)
        assert not thread.is_alive(), "a loop's close hung"
        assert errors == []
        assert client_sockets([backend.port]) == 0
