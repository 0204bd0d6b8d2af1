"""A failed answer's body (5xx, 429), which the mesh reads itself before the pipeline
sees the failure, is bounded: a backend cannot make a caller hold an endless or huge
body in memory, or wait for it, by answering 503. Real loopback servers."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

import meshlite as ml
from meshlite.http import MAX_FAILURE_BODY

CHUNK = b"x" * 65536


class EndlessServer:
    """Answers every request with ``503`` and a chunked body that never ends (until
    the client goes away); counts the bytes it managed to send."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                             b"Content-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
                while self.sent < 1 << 30:  # 1 GiB: the test fails long before
                    conn.sendall(frame)
                    self.sent += len(CHUNK)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def endless() -> Iterator[EndlessServer]:
    server = EndlessServer()
    yield server
    server.close()


def _mesh(url: str) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [url], pipeline=ml.Pipeline())])


def test_the_kept_failure_body_is_at_most_one_mebibyte() -> None:
    assert MAX_FAILURE_BODY == 1 << 20


async def test_http_does_not_read_an_endless_failure_body(endless: EndlessServer) -> None:
    async with _mesh(endless.url) as mesh:
        response = await asyncio.wait_for(mesh.http("users").get("/x"), 20.0)
    assert response.status_code == 503
    assert response.content == b"x" * MAX_FAILURE_BODY
    assert endless.sent < 64 * MAX_FAILURE_BODY


def test_http_sync_does_not_read_an_endless_failure_body(endless: EndlessServer) -> None:
    with _mesh(endless.url) as mesh:
        response = mesh.http_sync("users").get("/x", timeout=20.0)
    assert response.status_code == 503
    assert response.content == b"x" * MAX_FAILURE_BODY
    assert endless.sent < 64 * MAX_FAILURE_BODY


async def test_aiohttp_does_not_read_an_endless_failure_body(endless: EndlessServer) -> None:
    async with _mesh(endless.url) as mesh:
        session = mesh.aiohttp("users")
        response = await asyncio.wait_for(session.get("/x"), 20.0)
        assert response.status == 503
        assert await response.read() == b"x" * MAX_FAILURE_BODY
        assert await response.text() == "x" * MAX_FAILURE_BODY
        response.release()
    assert endless.sent < 64 * MAX_FAILURE_BODY


async def test_a_small_failure_body_is_kept_whole() -> None:
    async with ml.testing.FakeBackend() as backend:
        backend.set(status=503, body=b"down for maintenance")
        async with _mesh(backend.url) as mesh:
            assert (await mesh.http("users").get("/x")).content == b"down for maintenance"
            response = await mesh.aiohttp("users").get("/x")
            assert await response.read() == b"down for maintenance"
            response.release()
