"""Sync HTTP clients in a forked child (gunicorn's sync and ``gthread`` workers with
``preload_app``, Celery's prefork pool, ``multiprocessing`` with the fork start
method): the child never sends on a keep-alive connection of its parent's pools."""

from __future__ import annotations

import http.server
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from _forked import in_child, in_child_while_held, serving

import meshlite as ml

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")


class _Peers(http.server.BaseHTTPRequestHandler):
    """Answers each request with the client's port: one port, one connection."""

    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        body = json.dumps({"port": self.client_address[1]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[str]:
    with serving(_Peers) as url:
        yield url


@pytest.mark.parametrize("http_pool", [None, {"socket_options": [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]}], ids=["urllib3", "httpcore"])
def test_a_forked_child_opens_its_own_connections(backend: str, http_pool: Any) -> None:
    mesh = ml.Mesh([ml.Service("users", [backend], http_pool=http_pool)])
    client = mesh.http_sync("users")
    mine = client.get("/").json()["port"]
    assert client.get("/").json()["port"] == mine  # kept alive in the parent
    theirs = in_child(lambda: int(client.get("/").json()["port"]))
    assert theirs > 0
    assert theirs != mine  # not the parent's socket
    # The child closed its copy of the socket: the parent's connection goes on.
    assert client.get("/").json()["port"] == mine
    mesh.close()


def test_pool_locks_held_at_the_fork_do_not_hold_up_the_child(backend: str) -> None:
    mesh = ml.Mesh([ml.Service("users", [backend])])
    client = mesh.http_sync("users")
    client.get("/")
    pools = mesh.http_pools(mesh.service("users"), False)
    wire = pools.get(mesh.service("users").endpoints[0].backend).transport
    connections = next(iter(wire._pools.values())).pool  # urllib3's queue of idle ones
    locks = [pools._lock, wire._manager.pools.lock, connections.mutex]
    # a thread of the parent, mid-request when the fork comes
    assert in_child_while_held(locks, lambda: client.get("/").status_code) == 200
    assert client.get("/").status_code == 200
    mesh.close()
