"""The suite's socket count (tests/_sockets.py), which the connection pool tests rest
on: each client connection to the ports asked about counted once, in any state where
it is still open here."""

from __future__ import annotations

import socket
import sys
import time

import pytest
from _sockets import client_sockets

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")


def test_each_open_client_connection_is_counted_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_server(("127.0.0.1", 0)) as other:
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [server.accept()[0] for _ in clients]
        elsewhere = socket.create_connection(other.getsockname())
        try:
            # Neither the listening socket, the server's side, nor another port's.
            assert client_sockets([port]) == 3
            assert client_sockets([port, other.getsockname()[1]]) == 4
            accepted[0].close()  # the server closed it: CLOSE_WAIT here, still open
            time.sleep(0.05)
            assert client_sockets([port]) == 3
            clients[0].close()
            assert client_sockets([port]) == 2
        finally:
            for sock in [*clients, *accepted, elsewhere]:
                sock.close()
        assert client_sockets([port]) == 0
