"""mesh.http_sync() from several threads while the mesh closes or a backend leaves:
a thread blocked on a connection (a body half read, an answer not come) is woken
by the close with ``httpx.ReadError``, however long its read timeout (none here),
while a backend taken out of the service never cuts a body still being read."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _raw_http import accept_each

import meshlite as ml

_BODY = b"x" * 2000
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(_BODY)
_JOIN = 30.0  # seconds a woken thread has to end: a bound for a loaded machine


class _Server:
    """A loopback HTTP/1.1 server, one thread a connection. ``/part`` answers the
    head and the first 100 bytes of the body, ``/silent`` nothing, and both hold the
    rest until :attr:`release` is set; other paths get the whole body."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.release = threading.Event()
        self.holding = threading.Semaphore(0)  # one release per request held
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        accept_each(self._sock, self._serve, self._conns, self._threads)

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            while line := stream.readline():
                path = line.split()[1]
                while stream.readline() not in (b"\r\n", b""):
                    pass
                try:
                    if path == b"/part":
                        conn.sendall(_HEAD + _BODY[:100])
                    elif path != b"/silent":
                        conn.sendall(_HEAD + _BODY)
                        continue
                    self.holding.release()
                    self.release.wait()
                    conn.sendall(_BODY[100:] if path == b"/part" else _HEAD + _BODY)
                except OSError:  # the client cut it
                    return

    def close(self) -> None:
        self.release.set()
        for sock in [self._sock, *self._conns]:  # a shutdown wakes a blocked accept/read
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._accepting.join()
        for thread in self._threads:
            thread.join()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    try:
        yield s
    finally:
        s.close()


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as error:  # the test looks at any outcome
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_closing_the_mesh_wakes_threads_blocked_on_its_connections(server: _Server) -> None:
    mesh = ml.Mesh([ml.Service("users", [server.url])], drain_timeout=0.0)
    mesh.__enter__()
    client = mesh.http_sync("users", timeout=None)  # no read timeout to end the waits
    heads = threading.Semaphore(0)

    def read_body() -> int:
        with client.stream("GET", "/part") as response:
            heads.release()  # the head is in: the attempt is over, the body is next
            return sum(len(chunk) for chunk in response.iter_raw())

    readers = [_in_thread(read_body) for _ in range(4)]
    waiters = [_in_thread(lambda: client.get("/silent")) for _ in range(4)]
    for _ in range(8):  # every request reached the server, which holds it
        assert server.holding.acquire(timeout=_JOIN)
    for _ in range(4):
        assert heads.acquire(timeout=_JOIN)
    try:
        mesh.close()
        for thread, _ in readers + waiters:
            thread.join(_JOIN)
        stuck = sum(thread.is_alive() for thread, _ in readers + waiters)
        assert stuck == 0, f"{stuck} of 8 threads still blocked after the mesh closed"
    finally:
        server.release.set()  # (frees any thread still blocked)
        for thread, _ in readers + waiters:
            thread.join(_JOIN)
    for _, outcome in readers:
        assert isinstance(outcome.get("error"), httpx.ReadError), outcome
        assert "closed with its pool" in str(outcome["error"])
    for _, outcome in waiters:
        # the attempt is cut; the pipeline does not send it again
        assert isinstance(outcome.get("error"), httpx.ReadError | ml.MeshClosedError), outcome


def test_a_backend_taken_out_never_cuts_a_body_being_read(server: _Server) -> None:
    with ml.Mesh([ml.Service("users", [server.url])]) as mesh, \
            mesh.http_sync("users", timeout=None) as client:
        service = mesh.service("users")
        heads = threading.Semaphore(0)

        def read_body() -> bytes:
            with client.stream("GET", "/part") as response:
                heads.release()
                return b"".join(response.iter_raw())

        readers = [_in_thread(read_body) for _ in range(4)]
        for _ in range(4):
            assert server.holding.acquire(timeout=_JOIN)
            assert heads.acquire(timeout=_JOIN)
        service.set_backends(["http://127.0.0.1:9"])  # the pool of server retires
        server.release.set()
        for thread, _ in readers:
            thread.join(_JOIN)
        assert [outcome.get("result") for _, outcome in readers] == [_BODY] * 4
