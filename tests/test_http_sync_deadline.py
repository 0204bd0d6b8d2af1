"""mesh.http_sync(): an attempt that waits for a pooled connection gets, to connect
and read, the time left of its deadline once it has the connection, not the time
left when it began; none is sent once the deadline passed while it waited.

Real loopback server and threads; the deadline is on a clock the test sets (the
call's `ml.Timeout(clock=...)`), and the wait is seen in the pool's own queue: no
timed assertion."""

from __future__ import annotations

import queue
import re
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import meshlite as ml

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _Server:
    """A loopback HTTP/1.1 server: ``/hold`` is answered once ``release_hold`` is set,
    ``/hang`` once ``release_hang`` is (or never, when the client cuts the connection
    first: ``cut`` is then set), any other path at once."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.paths: list[str] = []
        self.connections = 0
        self.held = threading.Event()
        self.release_hold = threading.Event()
        self.hanging = threading.Event()
        self.release_hang = threading.Event()
        self.cut = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                path = head.split(b" ")[1].decode("ascii")
                self.paths.append(path)
                if path == "/hold":
                    self.held.set()
                    self.release_hold.wait()
                elif path == "/hang" and not self._hang(conn):
                    return
                conn.sendall(_OK)

    def _hang(self, conn: socket.socket) -> bool:
        """Wait for ``release_hang`` (True) or the client's close (False)."""
        self.hanging.set()
        while not self.release_hang.is_set() and not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(65536):
                self.cut.set()
                return False
        return True

    def stop(self) -> None:
        self._stop.set()
        self.release_hold.set()
        self.release_hang.set()
        self._listener.close()


class _SetClock:
    """A clock that reads what the test set."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:  # pragma: no cover - not used here
        raise AssertionError("no sleep expected")

    async def asleep(self, seconds: float) -> None:  # pragma: no cover - not used here
        raise AssertionError("no sleep expected")


class _Watched(queue.LifoQueue[Any]):
    """A urllib3 pool's queue that tells when a request starts waiting on it."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.waiting = threading.Event()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block and self.empty():
            self.waiting.set()
        return super().get(block, timeout)


@pytest.fixture
def server() -> Iterator[_Server]:
    made = _Server()
    yield made
    made.stop()


def _run(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as error:  # kept for the test thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _second_waits(server: _Server, budget: float, then: float, path: str
                  ) -> dict[str, Any]:
    """Request ``/hold`` (taking the one connection), then ``path`` within a deadline
    ``budget`` s away on a set clock; once the second waits for the connection, set
    the clock ``then`` s on and let the first finish. What the second ended with."""
    clock = _SetClock()
    service = ml.Service("users", [server.url], pipeline=ml.Pipeline(),
                         http_pool={"limits": httpx.Limits(max_connections=1)})
    with ml.Mesh([service]) as mesh, mesh.http_sync("users") as client:
        first, first_outcome = _run(lambda: client.get("/hold"))
        assert server.held.wait(30)
        pools = mesh.http_pools(mesh.service("users"), False)
        (target,) = pools._targets.values()
        (pool,) = target.transport._pools.values()
        watched = pool.pool = _Watched(1)  # empty: the one connection is out

        @ml.Timeout(budget, clock=clock)
        def second() -> httpx.Response:
            return client.get(path)

        second_thread, outcome = _run(second)
        assert watched.waiting.wait(30)  # the second waits for the connection
        clock.now = then
        server.release_hold.set()
        first.join(30)
        assert first_outcome["value"].status_code == 200
        second_thread.join(30)
        assert not second_thread.is_alive()
        server.release_hang.set()
        assert client.get("/after").status_code == 200
    return outcome


def test_a_deadline_passed_in_the_pool_wait_sends_nothing(server: _Server) -> None:
    outcome = _second_waits(server, budget=20.0, then=25.0, path="/late")
    error = outcome["error"]
    assert isinstance(error, ml.TimeoutExceeded)
    assert isinstance(error.__cause__, httpx.PoolTimeout)
    assert "the deadline passed while waiting for a free connection" in str(error.__cause__)
    assert server.paths == ["/hold", "/after"]  # "/late" was never sent
    assert server.connections == 1  # handed back unused: "/after" went on it


def test_the_read_timeout_is_the_time_left_after_the_pool_wait(server: _Server) -> None:
    # 0.25 s of the 5 s are left once the second gets the connection (the set clock
    # stands still there): its read gives up after those, while the server still holds
    # its answer, where it waited the 5 s before.
    outcome = _second_waits(server, budget=5.0, then=4.75, path="/hang")
    error = outcome["error"]
    if isinstance(error, ml.TimeoutExceeded):  # a machine so slow the real 5 s passed
        error = error.__cause__
    assert isinstance(error, httpx.ReadTimeout)
    found = re.search(r"read timeout=([0-9.e-]+)", str(error))
    assert found is not None, str(error)
    assert float(found.group(1)) == pytest.approx(0.25)
    assert server.cut.is_set()  # cut by the client, the answer still held
    assert server.paths == ["/hold", "/hang", "/after"]
    assert server.connections == 2  # the one cut is closed: "/after" opened another
