"""The loopback OTLP receiver of the tests stops as a collector that goes down: a
test that stops it to simulate an outage must get one. (Its connections outlived the
``with`` block: the exporter's kept-alive connection went on being answered 200 by
the "stopped" receiver, and a receiver started again on the port got nothing.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest
import requests
from _system import wait_for
from otlp_receiver import PROTOBUF, OtlpReceiver

pytestmark = pytest.mark.timeout(60)

POST = (b"POST /v1/traces HTTP/1.1\r\nHost: collector\r\nContent-Type: " + PROTOBUF.encode()
        + b"\r\nContent-Length: 0\r\n\r\n")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def answer(connection: socket.socket) -> bytes:
    """What the receiver says to one POST on ``connection``: its status line, or b""
    when the connection is closed or reset instead."""
    try:
        connection.sendall(POST)
        return connection.makefile("rb").readline()
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_a_stopped_receiver_answers_nothing_on_a_connection_kept_alive() -> None:
    with OtlpReceiver() as receiver:
        port = port_of(receiver.url)
        kept = socket.create_connection(("127.0.0.1", port))
        assert answer(kept).startswith(b"HTTP/1.1 200")
    with kept:
        kept.settimeout(30)
        assert answer(kept) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port)).close()
    assert len(receiver.exports) == 1


def test_an_exporters_session_fails_then_reaches_the_receiver_started_again() -> None:
    """As the OTLP exporter posts: a ``requests.Session`` keeping its connection."""
    session = requests.Session()
    with OtlpReceiver() as first:
        url = first.url + "/v1/traces"
        headers = {"Content-Type": PROTOBUF}
        assert session.post(url, data=b"", headers=headers, timeout=30).status_code == 200
    with pytest.raises(requests.ConnectionError):
        session.post(url, data=b"", headers=headers, timeout=30)
    with OtlpReceiver(port=port_of(first.url)) as second:
        assert session.post(url, data=b"", headers=headers, timeout=30).status_code == 200
    session.close()
    assert (len(first.exports), len(second.exports)) == (1, 1)


def test_a_post_waiting_out_the_delay_gets_no_answer_when_the_receiver_stops() -> None:
    got: list[bytes] = []
    with OtlpReceiver(delay=3600) as slow:
        connection = socket.create_connection(("127.0.0.1", port_of(slow.url)))
        connection.settimeout(30)
        waiting = threading.Thread(target=lambda: got.append(answer(connection)))
        waiting.start()
        wait_for(lambda: slow.arrived, 30, "the POST arrived", step=0.01)
    waiting.join(30)
    connection.close()
    assert got == [b""]
    assert slow.exports == []


def test_a_stopped_receiver_refuses_connections_while_a_child_holds_its_socket() -> None:
    """A process forked while the receiver ran (a test's worker) holds a copy of the
    listening socket: closed but not shut down, the port still took connections, which
    nobody accepted (an export then waits out its timeout instead of being refused)."""
    with OtlpReceiver() as receiver:
        listener = receiver._server.socket.fileno()  # type: ignore[union-attr]
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"],
            stdin=subprocess.PIPE, pass_fds=[listener])
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port_of(receiver.url))).close()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
