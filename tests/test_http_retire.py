"""Connection pools of backends a service no longer has are closed: mesh.http(),
mesh.http_sync() and mesh.aiohttp() against real loopback servers whose addresses
churn (as pods of a deployment come and go), with the client sockets counted in
/proc."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _sockets import client_sockets

import meshlite as ml
from meshlite.config._load import managed_of
from meshlite.discovery import Discovery, FileProvider
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.skipif(sys.platform != "linux",
                                reason="counts sockets in /proc/self/fd")

CHURN = 50
"""Backend replacements per churn test."""


async def settled(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls /proc
        await asyncio.sleep(0.01)


def settled_sync(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)


async def drained(mesh: ml.Mesh) -> None:
    managed = managed_of(mesh)
    assert managed is not None
    await settled(lambda: not managed.drains)
    assert not managed.drains, "retired services did not drain"


def service(url: str, **kwargs: Any) -> ml.Service:
    return ml.Service("users", [url], pipeline=ml.Pipeline(), **kwargs)


# -- mesh.http() -------------------------------------------------------------------


@pytest.mark.parametrize("http_pool", [None, {"retries": 1}], ids=["aiohttp", "httpcore"])
async def test_async_pools_of_removed_backends_are_closed(
        http_pool: dict[str, Any] | None) -> None:
    # The removed backends keep running (a config change, say): nothing but the
    # mesh would close the connections kept alive to them.
    backends = [await FakeBackend().start()]
    users = service(backends[0].url, http_pool=http_pool)
    try:
        async with ml.Mesh([users]) as mesh, mesh.http("users") as client:
            pools = mesh.http_pools(users, True)
            for _ in range(CHURN):
                assert (await client.get("/")).status_code == 200
                backends.append(await FakeBackend().start())
                users.set_backends([backends[-1].url])
            assert (await client.get("/")).json()["backend"] == backends[-1].url
            removed = [b.port for b in backends[:-1]]
            await settled(lambda: pools.transports() == 1 and not client_sockets(removed))
            assert pools.transports() == 1  # the current backend's
            assert client_sockets(removed) == 0
            assert client_sockets([backends[-1].port]) == 1
        assert client_sockets([backends[-1].port]) == 0
    finally:
        for backend in backends:
            await backend.stop()


async def test_a_request_in_flight_on_a_removed_backend_gets_its_answer() -> None:
    async with FakeBackend(latency=0.3) as slow, FakeBackend() as fast:
        users = service(slow.url)
        async with ml.Mesh([users]) as mesh, mesh.http("users") as client:
            pools = mesh.http_pools(users, True)
            call = asyncio.create_task(client.get("/slow"))
            await settled(lambda: slow.request_count == 1)
            users.set_backends([fast.url])
            assert (await client.get("/")).json()["backend"] == fast.url
            answer = await call
            assert answer.status_code == 200
            assert answer.json()["backend"] == slow.url
            await settled(lambda: not client_sockets([slow.port]))
            assert client_sockets([slow.port]) == 0
            assert pools.transports() == 1


async def test_a_body_being_read_from_a_removed_backend_is_read_to_the_end() -> None:
    body = b"x" * 2_000_000
    async with FakeBackend(body=body) as old, FakeBackend() as new:
        users = service(old.url)
        async with ml.Mesh([users]) as mesh, mesh.http("users") as client:
            pools = mesh.http_pools(users, True)
            async with client.stream("GET", "/big") as response:
                chunks = response.aiter_raw()
                first = await anext(chunks)
                users.set_backends([new.url])
                await asyncio.sleep(0.1)  # the retiring pool waits for this body
                rest = b"".join([chunk async for chunk in chunks])
            assert first + rest == body
            await settled(lambda: not client_sockets([old.port]))
            assert client_sockets([old.port]) == 0
            assert pools.transports() == 0  # none made for the new one yet


async def test_a_removed_backend_that_comes_back_gets_a_new_pool() -> None:
    async with FakeBackend() as a, FakeBackend() as b:
        users = service(a.url)
        async with ml.Mesh([users]) as mesh, mesh.http("users") as client:
            pools = mesh.http_pools(users, True)
            assert (await client.get("/")).json()["backend"] == a.url
            users.set_backends([b.url])
            assert (await client.get("/")).json()["backend"] == b.url
            users.set_backends([a.url])
            assert (await client.get("/")).json()["backend"] == a.url
            await settled(lambda: not client_sockets([b.port]))
            assert client_sockets([b.port]) == 0
            assert pools.transports() == 1


async def test_closing_the_mesh_closes_retiring_pools_and_stops_watching() -> None:
    async with FakeBackend(latency=0.5) as slow, FakeBackend() as fast:
        users = service(slow.url)
        async with ml.Mesh([users]) as mesh:
            client = mesh.http("users")
            call = asyncio.create_task(client.get("/"))
            await settled(lambda: slow.request_count == 1)
            users.set_backends([fast.url])
            pools = mesh.http_pools(users, True)
            assert pools.transports() == 1  # the slow one's, retiring
            assert (await call).status_code == 200  # the mesh drains it first
        assert pools.transports() == 0
        assert client_sockets([slow.port, fast.port]) == 0
        assert users._watchers == ()  # the closed pools watch no more


async def test_backends_discovery_replaces_have_their_pools_closed(tmp_path: Path) -> None:
    path = tmp_path / "backends.json"
    backends = [await FakeBackend().start()]
    path.write_text(json.dumps([backends[0].url]))
    users = ml.Service("users", pipeline=ml.Pipeline())
    users.attach(Discovery(users, FileProvider(path)))
    try:
        async with ml.Mesh([users]) as mesh, mesh.http("users") as client:
            pools = mesh.http_pools(users, True)
            for _ in range(10):
                assert (await client.get("/")).status_code == 200
                backends.append(await FakeBackend().start())
                path.write_text(json.dumps([backends[-1].url]))
                await settled(lambda: users.backends[0].address == backends[-1].url)
            assert (await client.get("/")).json()["backend"] == backends[-1].url
            removed = [b.port for b in backends[:-1]]
            await settled(lambda: pools.transports() == 1 and not client_sockets(removed))
            assert pools.transports() == 1
            assert client_sockets(removed) == 0
    finally:
        for backend in backends:
            await backend.stop()


# -- mesh.aiohttp() ----------------------------------------------------------------


async def test_aiohttp_sessions_close_idle_connections_to_removed_backends() -> None:
    backends = [await FakeBackend().start()]
    users = service(backends[0].url)
    try:
        async with ml.Mesh([users]) as mesh, mesh.aiohttp("users") as session:
            route = session._middlewares[-1].__self__  # type: ignore[attr-defined]
            for _ in range(CHURN):
                async with session.get("/") as response:
                    assert response.status == 200
                backends.append(await FakeBackend().start())
                users.set_backends([backends[-1].url])
            async with session.get("/") as response:
                assert (await response.json())["backend"] == backends[-1].url
            removed = [b.port for b in backends[:-1]]
            await settled(lambda: not client_sockets(removed))
            assert client_sockets(removed) == 0
            assert client_sockets([backends[-1].port]) == 1
            assert [address for _, address in route._targets] == [backends[-1].url]
    finally:
        for backend in backends:
            await backend.stop()


async def test_an_aiohttp_request_in_flight_on_a_removed_backend_gets_its_answer() -> None:
    async with FakeBackend(latency=0.3) as slow, FakeBackend() as fast:
        users = service(slow.url)
        async with ml.Mesh([users]) as mesh, mesh.aiohttp("users") as session:

            async def get(path: str) -> Any:
                async with session.get(path) as response:
                    return response.status, await response.json()

            call = asyncio.create_task(get("/slow"))
            await settled(lambda: slow.request_count == 1)
            users.set_backends([fast.url])
            assert (await get("/"))[1]["backend"] == fast.url
            assert await call == (200, {"backend": slow.url, "method": "GET",
                                        "path": "/slow"})
            await settled(lambda: not client_sockets([slow.port]))
            assert client_sockets([slow.port]) == 0
            users.set_backends([slow.url])  # back again
            assert (await get("/"))[1]["backend"] == slow.url


async def test_an_aiohttp_body_being_read_from_a_removed_backend_is_read_to_the_end(
        ) -> None:
    body = b"x" * 2_000_000
    async with FakeBackend(body=body) as old, FakeBackend() as new:
        users = service(old.url)
        async with ml.Mesh([users]) as mesh, mesh.aiohttp("users") as session:
            async with session.get("/big") as response:
                first = await response.content.readany()
                users.set_backends([new.url])
                await asyncio.sleep(0.1)  # the idle connections are closed meanwhile
                rest = await response.content.read()
            assert first + rest == body
            await settled(lambda: not client_sockets([old.port]))
            assert client_sockets([old.port]) == 0


async def test_backends_behind_one_host_and_port_keep_its_connections() -> None:
    # Backends told apart by their path (behind one gateway): removing some started a
    # task waiting until no connection to their host and port was in use, which the
    # remaining ones' traffic never allowed; under churn one task (holding the removed
    # endpoints) piled up a change.
    async with FakeBackend(latency=0.02) as gateway:
        users = service(gateway.url + "/gen0")
        async with ml.Mesh([users]) as mesh, mesh.aiohttp("users") as session:
            route = session._middlewares[-1].__self__  # type: ignore[attr-defined]
            churning = True

            async def traffic() -> None:
                while churning:
                    async with session.get("/") as response:
                        assert response.status == 200

            callers = [asyncio.create_task(traffic()) for _ in range(4)]
            for generation in range(1, 20):
                await asyncio.sleep(0.03)  # requests in flight on the gateway
                users.set_backends([f"{gateway.url}/gen{generation}"])
            await asyncio.sleep(0.03)
            forgetting = route.forgetting
            assert forgetting is not None
            assert forgetting._tasks == set()
            churning = False
            await asyncio.gather(*callers)


async def test_a_closed_aiohttp_session_stops_watching_its_service() -> None:
    async with FakeBackend() as a, FakeBackend() as b:
        users = service(a.url)
        async with ml.Mesh([users]) as mesh:
            async with mesh.aiohttp("users") as session, session.get("/") as response:
                assert response.status == 200
            assert len(users._watchers) == 1
            users.set_backends([b.url])  # the session is closed: nothing to forget
            assert users._watchers == ()


async def test_sessions_made_and_closed_per_request_leave_no_watchers_behind() -> None:
    # A session taken per request (`async with mesh.aiohttp(...)`) and closed must
    # not leave its watcher on the service until the backends next change: a
    # service whose backends never change would keep one per request made.
    async with FakeBackend() as a:
        users = service(a.url)
        async with ml.Mesh([users]) as mesh:
            for _ in range(50):
                async with mesh.aiohttp("users") as session, session.get("/") as response:
                    assert response.status == 200
            assert len(users._watchers) == 1  # the last session's, until the next is made


async def test_closed_aiohttp_sessions_keep_no_service_a_reload_removed(
        tmp_path: Path) -> None:
    # A session remembers the service it routes to; the registry of the sessions
    # watching each service held them strongly, so every service a closed session
    # had last used (its pipeline, endpoints, histograms) stayed for good after a
    # reload removed it: memory grew with each reload.
    import aiohttp

    # No timers, no keep-alive: a cancelled timer holds the context of the request
    # that set it (the service in it) in the event loop until it would have fired.
    options = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=None)}

    async def get(name: str) -> None:
        session = mesh.aiohttp(name, connector=aiohttp.TCPConnector(force_close=True),
                               **options)
        async with session, session.get("/") as response:
            assert response.status == 200

    path = tmp_path / "mesh.yaml"
    async with FakeBackend() as backend:
        path.write_text(f"services:\n  users0:\n    backends: ['{backend.url}']\n")
        mesh = ml.Mesh.from_config(path)
        removed: list[weakref.ref[ml.Service]] = []
        async with mesh:
            for i in range(1, 11):
                await get(f"users{i - 1}")
                removed.append(weakref.ref(mesh.service(f"users{i - 1}")))
                path.write_text(f"services:\n  users{i}:\n    backends: ['{backend.url}']\n")
                assert await mesh.reload()
                await drained(mesh)
            await get("users10")  # the mesh forgets the sessions closed before it
            gc.collect()
            assert [r() for r in removed if r() is not None] == []


# -- mesh.http_sync() --------------------------------------------------------------


def test_sync_pools_of_removed_backends_are_closed() -> None:
    first = FakeBackend().start_sync()
    started = [first]  # all stopped at the end, a failure included (no thread left)
    users = service(first.url)
    removed: list[int] = []
    try:
        with ml.Mesh([users]) as mesh, mesh.http_sync("users") as client:
            pools = mesh.http_pools(users, False)
            current = first
            for _ in range(CHURN):
                assert client.get("/").status_code == 200
                new = FakeBackend().start_sync()
                started.append(new)
                users.set_backends([new.url])
                current.stop_sync()
                removed.append(current.port)
                current = new
            assert client.get("/").json()["backend"] == current.url
            settled_sync(lambda: pools.transports() == 1 and not client_sockets(removed))
            assert pools.transports() == 1
            assert client_sockets(removed) == 0
    finally:
        for backend in started:
            if backend.running:
                backend.stop_sync()


def test_a_sync_request_in_flight_on_a_removed_backend_gets_its_answer() -> None:
    with FakeBackend(latency=0.3) as slow, FakeBackend() as fast:
        users = service(slow.url, http_pool={"retries": 1})  # httpcore: close() cuts
        with ml.Mesh([users]) as mesh, mesh.http_sync("users") as client:
            pools = mesh.http_pools(users, False)
            answers: list[Any] = []
            thread = threading.Thread(target=lambda: answers.append(client.get("/slow")))
            thread.start()
            settled_sync(lambda: slow.request_count == 1)
            users.set_backends([fast.url])
            assert client.get("/").json()["backend"] == fast.url
            thread.join()
            assert answers[0].status_code == 200
            assert answers[0].json()["backend"] == slow.url
            settled_sync(lambda: pools.transports() == 1 and not client_sockets([slow.port]))
            assert pools.transports() == 1
            assert client_sockets([slow.port]) == 0
            users.set_backends([slow.url])  # back again: a new pool
            assert client.get("/").json()["backend"] == slow.url



def test_sync_connections_close_with_their_pools_while_responses_are_kept() -> None:
    # A response keeps its urllib3 pool alive (a caller's list here; an error's
    # traceback in a reference cycle does the same until a full collection), and
    # urllib3 2 closes a pool its manager lets go of only when it is collected: the
    # pools of a removed backend, and all of them when the mesh closes, are closed
    # explicitly, so no idle connection outlives them.
    with FakeBackend() as old, FakeBackend() as new:
        users = service(old.url)
        kept: list[Any] = []
        with ml.Mesh([users]) as mesh, mesh.http_sync("users") as client:
            kept += [client.get("/") for _ in range(3)]
            assert client_sockets([old.port]) == 1
            users.set_backends([new.url])
            kept += [client.get("/") for _ in range(3)]
            assert kept[-1].json()["backend"] == new.url
            settled_sync(lambda: not client_sockets([old.port]))
            assert client_sockets([old.port]) == 0
            assert client_sockets([new.port]) == 1
        assert client_sockets([old.port, new.port]) == 0
        assert [r.status_code for r in kept] == [200] * 6


# -- a client per request ----------------------------------------------------------


async def test_http_clients_taken_per_request_need_no_closing() -> None:
    # docs/mesh.md: mesh.http() clients share the mesh's pools, so one per request,
    # dropped unclosed, is freed and leaves no socket of its own behind.
    async with FakeBackend() as a, ml.Mesh([service(a.url)]) as mesh:
        clients = []
        for uid in range(20):
            client = mesh.http("users")
            assert (await client.get(f"/users/{uid}")).status_code == 200
            clients.append(weakref.ref(client))
        del client
        gc.collect()
        assert [ref for ref in clients if ref() is not None] == []
        assert client_sockets([a.port]) == 1  # the pool's one keep-alive connection


async def test_an_aiohttp_session_left_open_keeps_its_connections_until_the_mesh_closes(
        ) -> None:
    async with FakeBackend() as a:
        async with ml.Mesh([service(a.url)]) as mesh:
            for _ in range(3):
                async with mesh.aiohttp("users").get("/") as response:
                    assert response.status == 200
            assert client_sockets([a.port]) == 3  # a connector, and a connection, each
        assert client_sockets([a.port]) == 0
