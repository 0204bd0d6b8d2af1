"""A mesh whose config reloads rebuild or remove services keeps the metrics of the
services it has, and only those: its memory does not grow with each reload, a removed
service's series leave the exposition, and a service that carries on keeps counting."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import httpx
import pytest

import meshlite as ml
from meshlite.config._load import managed_of
from meshlite.observability import start_http_server
from meshlite.testing import FakeBackend

CONFIG = """
services:
  users:
    backends: ["{url}"]
    balancer: {balancer}
    retry: {{attempts: {attempts}}}
    circuit_breaker: {{failure_rate: 0.5, window: 10, min_calls: 5}}
{orders}"""

ORDERS = """  orders:
    backends: ["{url}"]
    retry: {{attempts: 2}}
"""


def config(url: str, balancer: str = "round_robin", orders: bool = False,
           attempts: int = 2) -> str:
    return CONFIG.format(url=url, balancer=balancer, attempts=attempts,
                         orders=ORDERS.format(url=url) if orders else "")


async def drained(mesh: ml.Mesh) -> None:
    managed = managed_of(mesh)
    assert managed is not None
    for _ in range(2000):
        if not managed.drains:
            return
        await asyncio.sleep(0.001)
    pytest.fail("retired services did not drain")


def samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            found[head] = float(value)
    return found


async def scrape(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    return samples(response.text)


async def test_rebuilding_reloads_leave_no_replaced_service_behind(tmp_path: Path) -> None:
    # Calls go through mesh.call (routing, endpoints, metrics): an HTTP call's
    # cancelled connect timer holds its context, the call's, in the event loop for
    # the timer's seconds, which would keep a few replaced services alive a while.
    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text(config(backend.url))
        mesh = ml.Mesh.from_config(path)
        assert mesh.metrics is not None
        mesh.add_hook(lambda event: None)  # the hooks a dashboard or an app adds
        mesh.audit = ml.AuditLog(tmp_path / "audit.log")
        server = start_http_server(mesh)
        replaced: list[weakref.ref[object]] = []
        series = f'meshlite_backend_requests_total{{service="users",backend="{backend.url}"}}'
        last = 0.0
        try:
            async with mesh:
                for i in range(40):
                    users = mesh.service("users")
                    replaced.append(weakref.ref(users))
                    replaced += [weakref.ref(p) for p in users.pipeline.walk()
                                 if p.kind == "retry"]
                    del users
                    assert await mesh.call("users", lambda b: b.address) == backend.url
                    mesh.call_sync("users", lambda b: b.address)
                    balancer = "random" if i % 2 == 0 else "round_robin"
                    path.write_text(config(backend.url, balancer, attempts=2 + i % 2))
                    assert await mesh.reload()  # the balancer changed: a new service
                    await drained(mesh)
                    now = (await scrape(server.url))[series]
                    assert now == last + 2  # carries on across the rebuild: no reset
                    last = now
                assert mesh.config_version == 40
                gc.collect()
                assert [r for r in replaced if r() is not None] == []
                assert list(mesh.metrics.series) == [mesh.service("users")]
                assert len(mesh.metrics.recorders) <= 1
                exposition = await scrape(server.url)
                assert exposition['meshlite_requests_total{service="users"}'] == 80
        finally:
            server.stop()


async def test_a_removed_services_series_leave_the_exposition(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text(config(backend.url, orders=True))
        mesh = ml.Mesh.from_config(path)
        server = start_http_server(mesh)
        try:
            async with mesh:
                assert (await mesh.http("orders").get("/x")).status_code == 200
                assert (await mesh.http("users").get("/x")).status_code == 200
                before = await scrape(server.url)
                assert any('service="orders"' in k for k in before)
                path.write_text(config(backend.url))
                assert await mesh.reload()
                await drained(mesh)
                after = await scrape(server.url)
                assert [k for k in after if 'service="orders"' in k] == []
                kept = 'meshlite_requests_total{service="users"}'
                assert after[kept] == before[kept] == 1
                path.write_text(config(backend.url, orders=True))  # back again: from 0
                assert await mesh.reload()
                again = await scrape(server.url)
                assert again['meshlite_requests_total{service="orders"}'] == 0
        finally:
            server.stop()


async def test_a_dashboards_sampler_forgets_a_removed_service(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text(config(backend.url, orders=True))
        mesh = ml.Mesh.from_config(path)
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            try:
                await server.monitor.stop()  # ticked by hand
                await mesh.call("orders", lambda b: b.address)
                server.monitor.tick()
                assert set(server.monitor.histories) == {"users", "orders"}
                endpoint = weakref.ref(mesh.service("orders").endpoints[0])
                path.write_text(config(backend.url))
                assert await mesh.reload()
                await drained(mesh)
                server.monitor.tick()
                assert set(server.monitor.histories) == {"users"}
                async with httpx.AsyncClient(trust_env=False) as client:
                    gone = await client.get(server.url + "/api/services/orders")
                assert gone.status_code == 404
                gc.collect()
                assert endpoint() is None  # nothing the dashboard keeps holds it
            finally:
                await server.stop()


async def test_a_mesh_hook_stays_on_a_policy_a_rebuilt_service_kept(tmp_path: Path) -> None:
    # A reload that changes a service's routing builds a new service around the same
    # policy objects; letting the old service go must not take the mesh's hooks off
    # them, and while both hold the policy its events arrive once.
    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text(config(backend.url))
        mesh = ml.Mesh.from_config(path)
        seen: list[str] = []
        mesh.add_hook(lambda event: seen.append(type(event).__name__))
        async with mesh:
            old = mesh.service("users")
            breaker = next(p for p in old.pipeline.walk() if p.kind == "circuit_breaker")
            path.write_text(config(backend.url, balancer="random"))
            assert await mesh.reload()
            new = mesh.service("users")
            assert new is not old
            assert breaker is next(p for p in new.pipeline.walk()
                                   if p.kind == "circuit_breaker")
            breaker.force_open()
            assert seen.count("CircuitStateChanged") == 1  # old and new both subscribed it
            await drained(mesh)
            seen.clear()
            breaker.reset()
            breaker.force_open()
            assert seen.count("CircuitStateChanged") == 1  # the old one's leaving kept it


def test_a_name_added_back_while_its_old_service_drains_keeps_its_series() -> None:
    from meshlite.observability import render

    # The order a reload's steps may take: the old `orders` finishes draining after
    # the reload that brings the name back adopted its new service, before that
    # service is registered.
    old = ml.Service("orders", ["http://127.0.0.1:9"])
    mesh = ml.Mesh([old, ml.Service("users", ["http://127.0.0.1:9"])])
    mesh.call_sync("orders", lambda backend: backend.address)
    mesh.drop_service(old)
    new = ml.Service("orders", ["http://127.0.0.1:9"])
    mesh.adopt(new)
    mesh.forget_service(old)
    mesh.put_service(new, adopted=True)
    for _ in range(5):
        mesh.call_sync("orders", lambda backend: backend.address)
    assert 'meshlite_requests_total{service="orders"} 6' in render(mesh).splitlines()


async def test_a_late_event_of_a_removed_service_does_not_bring_its_series_back(
        tmp_path: Path) -> None:
    from meshlite.observability import render

    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text("drain_timeout: 0.2\n" + config(backend.url, orders=True))
        mesh = ml.Mesh.from_config(path)
        async with mesh:
            gate = asyncio.Event()
            tries = 0

            async def slow(backend: object) -> str:
                nonlocal tries
                tries += 1
                if tries == 1:
                    await gate.wait()  # outlives the drain
                    raise ConnectionError("the backend hung up")
                return "ok"

            call = asyncio.create_task(mesh.call("orders", slow))
            await asyncio.sleep(0.05)
            path.write_text("drain_timeout: 0.2\n" + config(backend.url))
            assert await mesh.reload()
            await drained(mesh)
            assert 'service="orders"' not in render(mesh)
            gate.set()
            assert await call == "ok"  # retried: a RetryScheduled event of `orders`
            assert 'service="orders"' not in render(mesh)


async def test_health_polls_do_not_keep_a_removed_services_policies(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text(config(backend.url, orders=True))
        mesh = ml.Mesh.from_config(path)
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            try:
                orders = mesh.service("orders")
                kept = [weakref.ref(p) for p in orders.pipeline.walk()]
                del orders
                async with httpx.AsyncClient(trust_env=False) as client:
                    assert (await client.get(server.url + "/api/health")).status_code == 200
                path.write_text(config(backend.url))
                assert await mesh.reload()
                await drained(mesh)
                server.monitor.tick()  # the dashboard lets the name go
                gc.collect()
                assert [r for r in kept if r() is not None] == []
            finally:
                await server.stop()


def test_the_names_of_removed_services_are_not_kept_without_end() -> None:
    # The feed remembers removed services to ignore their late events; with reloads
    # that keep naming new services it kept every name ever removed.
    from meshlite.observability._feed import MAX_DROPPED

    mesh = ml.Mesh([])
    metrics = mesh.metrics
    assert metrics is not None
    for i in range(MAX_DROPPED + 300):
        removed = ml.Service(f"s{i}", ["http://127.0.0.1:9"])
        metrics.adopt(removed)  # what a reload does for a new service...
        metrics.forget(removed)  # ...and once it removed it and it drained
    assert len(metrics.feed.dropped) == MAX_DROPPED
    assert f"s{MAX_DROPPED + 299}" in metrics.feed.dropped  # the newest are kept
    back = ml.Service(f"s{MAX_DROPPED + 299}", ["http://127.0.0.1:9"])
    metrics.adopt(back)  # a service of a removed name is back: counted again
    assert back.name not in metrics.feed.dropped
