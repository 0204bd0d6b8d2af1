"""Listening sockets in a forked child: a worker forked after the metrics server
(or the dashboard) started must not keep the parent's listening socket open. It
did: once the parent stopped serving, the port stayed bound for as long as the
child ran (a restart failed with "address in use") and connections to it were
accepted by the kernel into a queue nobody read."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest
from _forked import in_child_meanwhile

import meshlite as ml
from meshlite.observability import start_http_server

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")


def test_a_child_does_not_keep_the_metrics_port_of_its_parent() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    server = start_http_server(mesh)
    port = server.port
    restarted: list[int] = []

    def child(wait: Callable[[], None]) -> int:
        wait()  # runs on until the parent has restarted its server
        return 1

    def stop_then_restart() -> None:  # in the parent, while the child runs
        server.stop()
        try:
            with start_http_server(mesh, port=port) as again:
                restarted.append(httpx.get(again.url, trust_env=False).status_code)
        except OSError:
            restarted.append(-1)  # the port was still bound by the child's copy

    answer = in_child_meanwhile(child, stop_then_restart)
    assert restarted == [200]
    assert answer == 1


def test_a_child_does_not_keep_the_dashboard_port_of_its_parent() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    with mesh:
        loop = mesh.loop_thread
        assert loop is not None
        dashboard = loop.run(mesh.serve_dashboard(port=0))
        port = dashboard.port
        restarted: list[int] = []

        def child(wait: Callable[[], None]) -> int:
            wait()  # runs on until the parent has restarted its dashboard
            return 1

        def stop_then_restart() -> None:  # in the parent, while the child runs
            loop.run(dashboard.stop())
            try:
                again = loop.run(mesh.serve_dashboard(port=port))
            except OSError:
                restarted.append(-1)  # the port was still bound by the child's copy
            else:
                url = f"{again.url}/api/health"
                restarted.append(httpx.get(url, trust_env=False).status_code)
                loop.run(again.stop())

        answer = in_child_meanwhile(child, stop_then_restart)
    assert restarted == [200]
    assert answer == 1
