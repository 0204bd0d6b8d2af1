"""Service-to-service edges: outgoing requests carry the mesh's name, the called
service's middleware learns its callers, and its dashboard serves both directions."""

from __future__ import annotations

import contextlib

import httpx
import pytest

import meshlite as ml
from meshlite._inbound._headers import parse_grpc_timeout, valid_caller
from meshlite._inbound._stats import CALLER_IDLE_SECONDS, OTHER_CALLER, InboundStats
from meshlite.asgi import MeshMiddleware
from meshlite.testing import AsgiServer, FakeBackend


async def test_dashboard_topology_has_caller_and_callee_edges() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        r = await orders.http("inventory").get("/stock")
        await send({"type": "http.response.start", "status": r.status_code,  # type: ignore[operator]
                    "headers": []})
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async with FakeBackend() as inventory:
        orders = ml.Mesh([ml.Service("inventory", [inventory.url])], name="orders")
        orders_app = MeshMiddleware(app, mesh=orders)
        async with orders, AsgiServer(orders_app) as orders_server:
            gateway = ml.Mesh([ml.Service("orders", [orders_server.url])], name="gateway")
            async with gateway:
                for _ in range(3):
                    assert (await gateway.http("orders").get("/orders")).status_code == 200
                inventory.set(error_rate=1.0)
                assert (await gateway.http("orders").get("/orders")).status_code == 503
            dashboard = await orders.serve_dashboard(port=0)
            try:
                async with httpx.AsyncClient() as client:
                    topo = (await client.get(dashboard.url + "/api/topology")).json()
                    metrics = (await client.get(dashboard.url + "/metrics")).text
                    inbound = (await client.get(dashboard.url + "/api/inbound")).json()
            finally:
                await dashboard.stop()
    assert topo["service"] == "orders"
    edges = {(e["from"], e["to"]): e for e in topo["edges"]}
    assert set(edges) == {("gateway", "orders"), ("orders", "inventory")}
    caller = edges[("gateway", "orders")]
    assert caller["requests"] >= 4  # the gateway's mesh may retry the 503
    assert caller["errors"] >= 1
    assert caller["request_rate"] > 0
    assert edges[("orders", "inventory")]["requests"] >= 4
    (route,) = inbound["routes"]
    assert (route["route"], route["requests"]) == ("*", caller["requests"])
    assert route["statuses"] == {"200": 3, "503": caller["requests"] - 3}
    assert route["refused"] == caller["errors"]
    # the server-side metrics are in the mesh's exposition, beside its own
    assert 'meshlite_server_caller_requests_total{caller="gateway"}' in metrics
    assert 'meshlite_server_requests_total{route="*",method="GET",status="200"} 3' in metrics


def test_mesh_name_is_checked_and_defaults_to_otel_service_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    assert ml.Mesh().name == "billing"
    assert ml.Mesh(name="shop").name == "shop"
    with pytest.raises(ml.ConfigError, match="Mesh: name must be None or a service name"):
        ml.Mesh(name="no spaces please")


@pytest.mark.parametrize("value", ["users\n", "users\r\n", "a" * 129, "", "us ers", "üsers"])
def test_a_caller_name_with_anything_after_it_is_refused(value: str) -> None:
    # `$` in a pattern matches before a final newline; the whole value must match.
    assert valid_caller(value) is None
    assert valid_caller("users.v2_a-b") == "users.v2_a-b"


@pytest.mark.parametrize("value", ["\u0663S", "3\u0663S", "123456789S", "-1S", "1.5S"])
def test_a_grpc_timeout_is_ascii_digits_and_a_unit_only(value: str) -> None:
    assert parse_grpc_timeout(value) is None
    assert parse_grpc_timeout("1500m") == 1.5


def test_forged_callers_cannot_blind_the_topology_to_real_ones() -> None:
    # 256 forged names fill the caller table; a real caller arriving then is still
    # counted (as OTHER_CALLER), and once the forged ones fall idle it has its own edge.
    stats = InboundStats()
    for i in range(300):
        stats.record("/x", "GET", 200, 0.001, f"forged-{i}", 1000.0)
    stats.record("/x", "GET", 503, 0.001, "orders", 1001.0)
    edges = {c["caller"]: c for c in stats.callers(1001.0)}
    assert len(edges) == 257
    assert edges[OTHER_CALLER]["requests"] == 45  # 44 forged + orders
    assert edges[OTHER_CALLER]["errors"] == 1
    assert valid_caller(OTHER_CALLER) is None  # no real caller can be named so
    later = 1001.0 + CALLER_IDLE_SECONDS + 1
    stats.record("/x", "GET", 200, 0.001, "orders", later)
    edges = {c["caller"]: c for c in stats.callers(later)}
    assert edges["orders"]["requests"] == 1
    assert not any(name.startswith("forged-") for name in edges)


def test_the_topologys_edges_are_each_services_totals_read_without_a_snapshot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # /api/topology answers every open dashboard page's poll on the event loop: a
    # snapshot of every backend (percentiles, states, breakers) was 120-150 ms of it
    # at 300 services of 50 backends (benchmarks/topology.py); two totals a service.
    from meshlite._inbound._topology import topology
    from meshlite.routing._endpoint import Endpoint

    mesh = ml.Mesh([ml.Service("users", ["u:1", "u:2"]), ml.Service("orders", ["o:1"])],
                   name="gateway")

    def fails(backend: ml.Backend, n: int) -> int:
        if n % 3 == 0:
            raise ConnectionError("down")
        return n

    for n in range(10):
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", fails, n)
    expected = {name: (s.requests, s.errors) for name, s in mesh.snapshot().items()}
    assert expected["users"][0] > expected["users"][1] > 0

    def no_snapshot(self: Endpoint) -> list[float]:
        raise AssertionError("the topology read a backend's latencies")

    monkeypatch.setattr(Endpoint, "latencies", no_snapshot)
    with mesh.override("orders", ml.Service("orders", ["o:9"])):
        mesh.call_sync("orders", fails, 1)  # on the override's service: counted there
        edges = {edge["to"]: (edge["requests"], edge["errors"])
                 for edge in topology(mesh, {})["edges"]}
    assert edges == {"users": expected["users"], "orders": (1, 0)}
