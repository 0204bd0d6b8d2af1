"""mesh.http_sync() from many threads against one backend's connection pool: never
more connections than ``max_connections`` (counted on the server's side), and no
slot of the pool lost, whatever the callers do with their responses: a response
dropped unclosed (neither read to the end nor closed) gives its connection back as
it goes, so the pool, which every client of the service shares, keeps all of them.
A pool that has none free says so when its pool timeout passes; closing the mesh wakes
the threads waiting for one."""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from _sockets import client_sockets
from _system import wait_for

import meshlite as ml
from meshlite._http import _urllib3_parts
from meshlite._http._sync_wire import Urllib3Transport

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")

_THREADS = 64
_LIMIT = 4
_BIG = b"y" * 2_000_000  # more than the sockets' buffers hold: its sender waits
_BOUND = 30.0  # seconds: a bound for a loaded machine, never a measure


def _live(sock: socket.socket) -> bool:
    """Whether the client end of ``sock`` is still open: its close (a FIN, or a
    reset) reaches this end before a connection it opens afterwards is accepted."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # nothing to read: open
    except OSError:
        return False  # reset


class _Server:
    """A loopback HTTP/1.1 server, one thread a connection, that counts on each new
    connection how many of its connections are open at the client's end (``peak``:
    the most). ``/big`` answers a body of 2 MB, other paths ``ok``."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=_THREADS * 2)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.peak = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns = [c for c in self._conns if c.fileno() != -1]
                self._conns.append(conn)
                self.peak = max(self.peak, sum(_live(c) for c in self._conns))
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn, conn.makefile("rb") as stream:
            while line := stream.readline():
                big = line.split()[1] == b"/big"
                while stream.readline() not in (b"\r\n", b""):
                    pass
                body = _BIG if big else b"ok"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._accepting.join()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):  # closed already
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    try:
        yield s
    finally:
        s.close()


def _mesh(server: _Server, limit: int = _LIMIT) -> ml.Mesh:
    return ml.Mesh([ml.Service(
        "users", [server.url], pipeline=ml.Pipeline(),
        http_pool={"limits": httpx.Limits(max_connections=limit)})])


def _fan_out(work: Callable[[int], None], threads: int = _THREADS) -> list[BaseException]:
    """Run ``work(i)`` on ``threads`` threads that start together; their errors."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as error:  # the test looks at every outcome
            errors.append(error)

    started = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for thread in started:
        thread.start()
    _join(started)
    return errors


def _join(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + _BOUND
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "threads still blocked"


def _drop_unread(client: httpx.Client) -> None:
    response = client.send(client.build_request("GET", "/big"), stream=True)
    assert response.status_code == 200
    del response  # neither read nor closed


def _drop_half_read(client: httpx.Client) -> None:
    response = client.send(client.build_request("GET", "/big"), stream=True)
    next(response.iter_raw())
    del response


def test_responses_dropped_unclosed_give_their_pool_slots_back(server: _Server) -> None:
    # The slot of each went with it: after max_connections of them the pool had none,
    # and every request of every client of the service waited out its pool timeout
    # (for good without one).
    with _mesh(server, limit=2) as mesh, mesh.http_sync(
            "users", timeout=httpx.Timeout(_BOUND, pool=_BOUND)) as client:
        for _ in range(3):
            _drop_unread(client)
            _drop_half_read(client)
            assert client.get("/").text == "ok"
        assert client_sockets([server.port]) <= 2
    assert server.peak <= 2
    assert client_sockets([server.port]) == 0


def test_threads_dropping_responses_leave_the_pool_whole(server: _Server) -> None:
    with _mesh(server) as mesh, mesh.http_sync(
            "users", timeout=httpx.Timeout(_BOUND, pool=_BOUND)) as client:

        def work(i: int) -> None:
            (_drop_unread if i % 2 else _drop_half_read)(client)
            assert client.get("/").text == "ok"

        assert _fan_out(work) == []
        assert client_sockets([server.port]) <= _LIMIT
        # every slot is back: as many responses held at once as the limit allows
        held = [client.send(client.build_request("GET", "/"), stream=True)
                for _ in range(_LIMIT)]
        for response in held:
            response.close()
    assert server.peak <= _LIMIT


def test_a_response_dropped_while_its_pool_is_locked_gives_its_slot_back_later(
        server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # A garbage collection may drop a response on a thread inside the pool's own
    # locked code: the finalizer cannot take the lock, and the slot goes back with
    # the pool's next request instead.
    monkeypatch.setattr(_urllib3_parts, "_LOCK_WAIT", 0.0)
    with _mesh(server, limit=1) as mesh, mesh.http_sync(
            "users", timeout=httpx.Timeout(_BOUND, pool=_BOUND)) as client:
        response = client.send(client.build_request("GET", "/big"), stream=True)
        pool = response.stream._response._pool  # type: ignore[attr-defined]
        with pool.pool.mutex:  # (as the thread would hold it)
            del response
        assert pool.pool.qsize() == 0  # the slot is still out
        assert client.get("/").text == "ok"
        assert pool.pool.qsize() == 1
    assert server.peak == 1


def test_the_pool_limit_holds_whatever_the_callers_do(server: _Server) -> None:
    with _mesh(server) as mesh, mesh.http_sync(
            "users", timeout=httpx.Timeout(_BOUND, pool=_BOUND)) as mesh_client:
        closing = mesh.http_sync("users", timeout=httpx.Timeout(_BOUND, pool=_BOUND))

        def work(i: int) -> None:
            kind = i % 4
            if kind == 0:
                with mesh_client.stream("GET", "/big") as response:
                    next(response.iter_raw())  # abandoned mid-body
            elif kind == 1:
                with pytest.raises(LookupError), mesh_client.stream("GET", "/big"):
                    raise LookupError("the caller's own error")
            elif kind == 2:
                with contextlib.suppress(RuntimeError):  # (once closed: refused)
                    closing.get("/")
                if i == 2:
                    closing.close()  # while the other threads are mid-request
            else:
                assert mesh_client.get("/big").content == _BIG

        assert _fan_out(work) == []
        assert client_sockets([server.port]) <= _LIMIT
        assert mesh.in_flight == 0
    assert server.peak <= _LIMIT
    assert client_sockets([server.port]) == 0


def test_a_pool_with_no_free_connection_says_so(server: _Server) -> None:
    # It said urllib3's "Pool is empty and a new connection can't be opened due to
    # blocking mode", after urllib3's name of the pool.
    with _mesh(server, limit=1) as mesh, mesh.http_sync(
            "users", timeout=httpx.Timeout(_BOUND, pool=0.01)) as client, \
            client.stream("GET", "/big"), \
            pytest.raises(httpx.PoolTimeout) as caught:  # the one connection is held
        client.get("/")
    assert str(caught.value) == (
        f"service 'users', backend {server.url}: no free connection within the pool "
        "timeout (0.01 s): all 1 connections to the backend (http_pool limits "
        "max_connections) are in use; raise max_connections or the client's pool "
        "timeout, or lower the load")


@pytest.mark.parametrize("retried", [False, True])
def test_closing_the_mesh_wakes_the_threads_waiting_for_a_free_connection(
        server: _Server, retried: bool) -> None:
    # They waited out their pool timeout, and for good without one (here), after
    # the mesh had closed.
    retry = ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0))
    pipeline = ml.Pipeline(retry) if retried else ml.Pipeline()
    mesh = ml.Mesh([ml.Service(
        "users", [server.url], pipeline=pipeline,
        http_pool={"limits": httpx.Limits(max_connections=1)})], drain_timeout=0.0)
    mesh.__enter__()
    try:
        client = mesh.http_sync("users", timeout=None)
        held = client.send(client.build_request("GET", "/big"), stream=True)
        free = held.stream._response._pool.pool  # type: ignore[attr-defined]
        outcomes: list[BaseException | int] = []

        def wait() -> None:
            try:
                outcomes.append(client.get("/").status_code)
            except BaseException as error:  # the test looks at every outcome
                outcomes.append(error)

        waiters = [threading.Thread(target=wait, daemon=True) for _ in range(8)]
        for thread in waiters:
            thread.start()
        wait_for(lambda: len(free.not_empty._waiters) == 8, _BOUND,
                 "8 threads waiting for the one connection")
    finally:
        mesh.close()
    _join(waiters)
    held.close()
    if retried:  # sent again: the mesh has closed
        assert all(isinstance(o, ml.MeshClosedError) for o in outcomes), outcomes
    else:
        assert all(isinstance(o, httpx.ConnectError) for o in outcomes), outcomes
        assert {str(o) for o in outcomes} == {
            f"service 'users', backend {server.url}: the connection pool closed (the "
            "mesh closed, or the service was removed) before the request got a "
            "connection: it was not sent"}
    assert client_sockets([server.port]) == 0


def test_a_closed_wire_opens_no_pool(server: _Server) -> None:
    # A request that got the transport just before the mesh closed it made a new pool
    # and connection, which no one closed.
    wire = Urllib3Transport(ssl.create_default_context(), httpx.Limits(max_connections=2))
    assert wire.handle_request(httpx.Request("GET", f"{server.url}/")).read() == b"ok"
    wire.close()
    with pytest.raises(httpx.ConnectError, match="it was not sent"):
        wire.handle_request(httpx.Request("GET", f"{server.url}/"))
    assert client_sockets([server.port]) == 0
