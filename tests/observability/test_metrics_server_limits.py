"""start_http_server's stdlib server against idle and half-sent connections: each
used to hold a thread of the application's process for ever (no socket timeout, no
cap), so a client opening thousands of them exhausted threads and memory. Real
loopback sockets."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

import meshlite as ml
from meshlite.observability import _http_server, start_http_server


@pytest.fixture
def mesh() -> ml.Mesh:
    return ml.Mesh([ml.Service("users", ["http://127.0.0.1:1"])])


def _half_sent(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    return sock


def test_the_defaults_are_bounded() -> None:
    assert _http_server.MAX_CONNECTIONS == 64
    assert _http_server.HEADER_TIMEOUT == 10.0


def test_a_half_sent_request_is_closed_after_the_timeout(
        mesh: ml.Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http_server, "HEADER_TIMEOUT", 0.5)
    with start_http_server(mesh) as server:
        sock = _half_sent(server.port)
        sock.settimeout(10.0)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server hung up
        assert time.monotonic() - started < 5.0
        sock.close()


def test_idle_connections_take_at_most_max_connections_threads(
        mesh: ml.Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http_server, "MAX_CONNECTIONS", 8)
    with start_http_server(mesh) as server:
        before = threading.active_count()
        socks = [_half_sent(server.port) for _ in range(50)]
        time.sleep(0.5)
        assert threading.active_count() - before <= 8
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + 10.0
        while True:  # the slots come back once the idle connections are gone
            try:
                with urllib.request.urlopen(server.url, timeout=2.0) as response:
                    assert b"meshlite_" in response.read()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)


def test_a_busy_port_names_the_address_and_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use") as info:
            start_http_server(ml.Mesh(), port=port)
    # A bare "[Errno 98] Address already in use" named neither.
    assert info.value.__notes__ == [f"meshlite metrics server: cannot listen on 127.0.0.1:"
                                    f"{port}; pick another port (port=0 picks a free one)"]
