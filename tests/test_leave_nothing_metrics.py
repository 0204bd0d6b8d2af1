"""A stopped metrics server (``start_http_server``) leaves no connection behind: the
connections it was serving are closed and their threads have ended when ``stop()``
returns."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from _forked import in_child

import meshlite as ml


def _new_threads(before: set[threading.Thread], seconds: float = 30.0
                 ) -> list[threading.Thread]:
    """The threads started since ``before``, once there is one (a bound on a hang)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        new = [t for t in threading.enumerate() if t not in before]
        if new:
            return new
        time.sleep(0.01)
    pytest.fail("the metrics server did not take the connection")


@pytest.mark.parametrize("sent", [b"", b"GET /metr"])
def test_stop_closes_the_connections_being_served(
        sent: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    # A connection idle or halfway through its request kept its handler thread and
    # its socket for up to HEADER_TIMEOUT (10 s) after stop() returned: a process
    # that rebuilds its metrics server (a reload, a test per server) piled them up.
    server = ml.telemetry.start_http_server(ml.Mesh(), port=0)
    try:
        before = set(threading.enumerate())
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(sent)
        handlers = _new_threads(before)
    finally:
        server.stop()
    with client:
        assert not [t for t in handlers if t.is_alive()]
        client.settimeout(30.0)  # (a bound on a hang)
        assert client.recv(100) == b""  # closed by the server
    assert "Traceback" not in capsys.readouterr().err  # (a cut answer is no error)


def test_a_stopped_server_still_answered_a_scrape_in_full() -> None:
    server = ml.telemetry.start_http_server(ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])]),
                                            port=0)
    with server, socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        client.settimeout(30.0)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200")
    assert b"meshlite" in answer


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")
def test_a_forked_child_stopping_its_copy_cuts_no_connection_of_the_parent() -> None:
    # The child's copy lists the parent's connections too (their sockets are shared
    # with the parent): its stop() must leave them to the parent.
    server = ml.telemetry.start_http_server(ml.Mesh(), port=0)
    before = set(threading.enumerate())
    with server, socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(b"GET /metrics HTTP/1.0\r\n")  # the head not finished yet
        _new_threads(before)

        def child() -> int:
            server.stop()
            return 1

        assert in_child(child) == 1
        client.sendall(b"\r\n")
        client.settimeout(30.0)
        assert client.recv(12) == b"HTTP/1.0 200"
