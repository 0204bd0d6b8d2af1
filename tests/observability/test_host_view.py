"""The host's dashboard with several workers: latency percentiles come from every
worker's attempt histograms, merged, and ``/api/workers`` gives each live worker's
backend and breaker states and says where they differ. The other worker is a real
process writing its file to the shared directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.observability._dashboard._monitor import Monitor
from meshlite.observability._dashboard._payload import workers_payload
from meshlite.observability._hostview import spread
from meshlite.testing import FakeBackend

OTHER = textwrap.dedent('''\
    import sys
    import meshlite as ml

    slow = sys.argv[1]
    mesh = ml.Mesh([ml.Service("users", backends=[slow],
                               pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db")))])
    with mesh, mesh.http_sync("users") as users:
        for _ in range(10):
            assert users.get("/work").status_code == 200
        [breaker] = [p for p in mesh.service("users").pipeline.walk()
                     if p.kind == "circuit_breaker"]
        breaker.force_open()
        mesh.metrics.shared.flush()
        print("ready", flush=True)
        sys.stdin.readline()  # stays alive (and its gauges live) until told
    ''')


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "multiproc"
    monkeypatch.setenv("MESHLITE_MULTIPROC_DIR", str(directory))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return directory


def test_spread_places_latencies_as_histogram_quantile_does() -> None:
    inf = float("inf")
    assert spread([(0.1, 0.0), (0.2, 4.0), (inf, 4.0)], 100) == pytest.approx(
        [0.1125, 0.1375, 0.1625, 0.1875])
    assert spread([(0.1, 1.0), (inf, 3.0)], 100) == pytest.approx([0.05, 0.1, 0.1])
    assert len(spread([(0.1, 5000.0), (inf, 5000.0)], 64)) == 64
    assert spread([], 10) == []


def test_latency_and_backend_states_are_the_hosts(shared: Path, tmp_path: Path) -> None:
    with FakeBackend() as fast:
        mesh = ml.Mesh([ml.Service("users", backends=[fast.url],
                                   pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db")))])
        monitor = Monitor(mesh, max_clients=1)
        monitor._sampler.sample(monitor.services(), 0)  # the baseline: nothing yet
        with mesh, mesh.http_sync("users") as users:
            for _ in range(30):
                assert users.get("/work").status_code == 200
            with FakeBackend(latency=0.2) as slow:
                script = tmp_path / "other.py"
                script.write_text(OTHER)
                other = subprocess.Popen([sys.executable, str(script), slow.url], text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                try:
                    assert other.stdout is not None
                    assert other.stdout.readline().strip() == "ready"
                    update = monitor.tick(10.0)
                    host = workers_payload(mesh)
                finally:
                    other.communicate("", timeout=30)
        users_now = update["services"]["users"]
        assert users_now["requests"] == 40  # both workers' calls
        # 30 fast calls here, 10 slow ones there: this worker alone has no slow call
        assert users_now["p50"] < 0.1
        assert users_now["p99"] >= 0.1
        views = {w["pid"]: w["backends"]["users"] for w in host["workers"]}
        assert views[other.pid]["breakers"] == {"users-db": "forced_open"}
        mine = [pid for pid in views if pid != other.pid]
        assert [views[pid]["breakers"] for pid in mine] == [{"users-db": "closed"}]
        assert {"service": "users", "breaker": "users-db",
                "workers": {str(mine[0]): "closed", str(other.pid): "forced_open"}
                } in host["differences"]


CALLED = textwrap.dedent('''\
    import asyncio
    import sys

    import httpx

    import meshlite as ml
    from meshlite.asgi import MeshMiddleware


    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


    async def main():
        mesh = ml.Mesh([ml.Service("users", backends=[sys.argv[1]])], name="orders")
        app = MeshMiddleware(ok, mesh=mesh)
        async with mesh:
            async with mesh.http("users") as users:
                for _ in range(10):
                    assert (await users.get("/work")).status_code == 200
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://orders") as client:
                for _ in range(5):
                    r = await client.get("/x", headers={"x-meshlite-caller": "gateway"})
                    assert r.status_code == 200
            mesh.metrics.shared.flush()
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)


    asyncio.run(main())
    ''')


async def test_topology_edges_and_service_totals_are_the_hosts(shared: Path,
                                                              tmp_path: Path) -> None:
    import asyncio

    import httpx

    from meshlite.asgi import MeshMiddleware

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with FakeBackend() as backend:
        mesh = ml.Mesh([ml.Service("users", backends=[backend.url])], name="orders")
        app = MeshMiddleware(ok, mesh=mesh)
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            async with mesh.http("users") as users:
                for _ in range(4):
                    assert (await users.get("/work")).status_code == 200
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://orders") as client:
                for _ in range(3):
                    await client.get("/x", headers={"x-meshlite-caller": "gateway"})
            script = tmp_path / "called.py"
            script.write_text(CALLED)
            other = await asyncio.create_subprocess_exec(
                sys.executable, str(script), backend.url, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE)
            try:
                assert other.stdout is not None
                assert (await other.stdout.readline()).strip() == b"ready"
                async with httpx.AsyncClient(base_url=server.url) as http:
                    for _ in range(50):
                        topo = (await http.get("/api/topology")).json()
                        edges = {(e["from"], e["to"]): e for e in topo["edges"]}
                        if edges.get(("gateway", "orders"), {}).get("requests") == 8:
                            break
                        await asyncio.sleep(0.2)
                    metrics = (await http.get("/metrics")).text
                    [listed] = (await http.get("/api/services")).json()["services"]
                    one = (await http.get("/api/services/users")).json()
            finally:
                assert other.stdin is not None
                other.stdin.write(b"\n")
                await other.wait()
            await server.stop()
    caller = edges[("gateway", "orders")]
    assert caller["requests"] == 8  # 3 here, 5 in the other worker
    assert caller["errors"] == 0
    assert caller["request_rate"] > 0
    assert edges[("orders", "users")]["requests"] == 14  # every worker's attempts
    # a service's totals in the REST answers are the host's too, as its edge's are
    assert (listed["requests"], listed["errors"]) == (14, 0)
    assert (one["requests"], one["errors"]) == (14, 0)
    # the server-side series are merged over workers in the exposition as well
    assert 'meshlite_server_caller_requests_total{caller="gateway"} 8' in metrics


def page_differences(url: str) -> list[str]:
    """The page's list of where workers disagree, read in the system Chromium."""
    from _system import read_page

    found: list[str] = read_page(url + "/", "#worker-differences:not([hidden]) li",
                                 "items => items.map(li => li.textContent)")
    return found


async def test_the_page_says_where_workers_disagree(shared: Path, tmp_path: Path) -> None:
    import asyncio

    with FakeBackend() as fast, FakeBackend(latency=0.2) as slow:
        mesh = ml.Mesh([ml.Service("users", backends=[fast.url],
                                   pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db")))])
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            script = tmp_path / "other.py"
            script.write_text(OTHER)
            other = await asyncio.create_subprocess_exec(
                sys.executable, str(script), slow.url, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE)
            try:
                assert other.stdout is not None
                assert (await other.stdout.readline()).strip() == b"ready"
                shown = await asyncio.to_thread(page_differences, server.url)
            finally:
                assert other.stdin is not None
                other.stdin.write(b"\n")
                await other.wait()
            await server.stop()
    assert any(line.startswith("workers disagree on users breaker users-db: ")
               and f"{other.pid} forced_open" in line and f"{os.getpid()} closed" in line
               for line in shown), shown
