"""``mesh.override()`` lets go of the service it made once the block ends: a mesh
shared by many tests (a session fixture) holds no service, hook, metrics series or
connection pool of an override that ended. Calls still running on it when the block
ends complete first (real FakeBackends and real HTTP clients throughout)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _races import ReadThen
from _sockets import client_sockets
from _system import wait_for

import meshlite as ml
from meshlite.observability._prometheus import render_mesh
from meshlite.routing._events import BackendEjected
from meshlite.testing import FakeBackend

UNUSED = "http://127.0.0.1:9"  # the registered backend: never reached here


def held(mesh: ml.Mesh) -> dict[str, int]:
    """What the mesh keeps per service it knows."""
    metrics = mesh.metrics
    assert metrics is not None
    pools = mesh._http
    return {
        "extra": len(mesh._extra),
        "hook subscriptions": sum(len(removers) for _, removers in mesh._hooks),
        "metrics series": len(metrics.series),
        "recorded chains": len(metrics.recorders) + len(metrics.arecorders),
        "pools": 0 if pools is None else len(pools._made),
    }


def observed(mesh: ml.Mesh, service: ml.Service) -> bool:
    """Whether the mesh still keeps anything of ``service``."""
    metrics = mesh.metrics
    assert metrics is not None
    pools = mesh._http
    return (any(service is s for s in mesh._extra) or service in metrics.series
            or any(id(service) in removers for _, removers in mesh._hooks)
            or (pools is not None and any(k[0] is service for k in pools._made)))


async def until(predicate: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Wait for ``predicate()`` (``seconds`` is a bound for a loaded machine)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: never happened"
        await asyncio.sleep(0.005)


def test_a_hundred_overrides_leave_the_mesh_as_they_found_it() -> None:
    mesh = ml.Mesh([ml.Service("users", [UNUSED]), ml.Service("orders", [UNUSED])])
    seen: list[ml.Event] = []
    mesh.add_hook(seen.append)
    with FakeBackend() as fake, mesh.http_sync("users") as client:
        start = held(mesh)
        made: list[weakref.ref[ml.Service]] = []
        for uid in range(100):
            with mesh.override("users", fake) as service, \
                    mesh.override("orders", [fake.url]):
                assert client.get(f"/users/{uid}").status_code == 200
                assert mesh.call_sync("orders", lambda b: b.address) == fake.url
                made.append(weakref.ref(service))
            del service
        assert held(mesh) == start
        # Nothing of them is left in /metrics, and nothing else holds them.
        assert fake.url not in render_mesh(mesh)
        assert client_sockets([fake.port]) == 0  # their pools closed
        gc.collect()
        assert [r for r in made if r() is not None] == []
        assert fake.request_count == 100
    assert mesh.call_sync("users", lambda b: b.address) == UNUSED  # the service is back


async def test_a_hundred_async_overrides_leave_the_mesh_as_they_found_it() -> None:
    mesh = ml.Mesh([ml.Service("users", [UNUSED])])
    async with FakeBackend() as fake, mesh.http("users") as client:
        start = held(mesh)
        for uid in range(100):
            with mesh.override("users", fake):
                assert (await client.get(f"/users/{uid}")).status_code == 200
                assert await mesh.call("users", lambda b: b.address) == fake.url
        assert held(mesh) == start
        assert fake.url not in render_mesh(mesh)
        # Their async pools are closed by tasks on this loop.
        await until(lambda: client_sockets([fake.port]) == 0,
                    "the retired pools' connections closed")


async def test_a_call_in_flight_when_the_override_ends_completes_then_its_service_goes(
) -> None:
    mesh = ml.Mesh([ml.Service("users", [UNUSED])])
    async with FakeBackend(hang=True) as fake, mesh.http("users") as client:
        start = held(mesh)
        with mesh.override("users", fake) as service:
            call = asyncio.create_task(client.get("/slow"))
            await until(lambda: fake.stats.hangs == 1, "the request reached the backend")
        # Where calls go is restored at once; the running call keeps its service.
        assert mesh.service("users") is not service
        assert observed(mesh, service)
        fake.set(hang=False)
        response = await call
        assert (response.status_code, response.json()["path"]) == (200, "/slow")
        await until(lambda: not observed(mesh, service), "the drained service let go of")
        assert held(mesh) == start


def test_a_sync_call_in_flight_when_the_override_ends_completes_then_its_service_goes(
) -> None:
    # The override ends on a thread with no event loop: its service drains on a loop
    # of its own.
    mesh = ml.Mesh([ml.Service("users", [UNUSED])])
    with FakeBackend(hang=True) as fake, mesh.http_sync("users") as client:
        start = held(mesh)
        answers: list[httpx.Response | BaseException] = []

        def get() -> None:
            try:
                answers.append(client.get("/slow"))
            except BaseException as error:
                answers.append(error)

        caller = threading.Thread(target=get)
        with mesh.override("users", fake) as service:
            caller.start()
            wait_for(lambda: fake.stats.hangs == 1, 30.0, "the request reached the backend",
                     step=0.005)
        assert observed(mesh, service)
        fake.set(hang=False)
        caller.join(30.0)
        [response] = answers
        assert isinstance(response, httpx.Response)
        assert (response.status_code, response.json()["path"]) == (200, "/slow")
        wait_for(lambda: not observed(mesh, service), 30.0, "the drained service let go of",
                 step=0.005)
        assert held(mesh) == start


def test_nested_overrides_each_let_go_of_their_own() -> None:
    mesh = ml.Mesh([ml.Service("users", [UNUSED]), ml.Service("orders", [UNUSED])])
    seen: list[ml.Event] = []
    mesh.add_hook(seen.append)
    start = held(mesh)
    where = lambda backend: backend.address  # noqa: E731
    with mesh.override("users", ["x"]) as outer:
        with mesh.override("users", ["y"]) as inner, mesh.override("orders", ["z"]) as other:
            assert [mesh.call_sync(n, where) for n in ("users", "orders")] == ["y", "z"]
        assert not observed(mesh, inner)
        assert not observed(mesh, other)
        # The outer one is still the mesh's: routed, recorded, hooked.
        assert mesh.call_sync("users", where) == "x"
        assert observed(mesh, outer)
        outer.eject("x")
        assert sum(isinstance(e, BackendEjected) for e in seen) == 1
    assert not observed(mesh, outer)
    assert held(mesh) == start
    assert mesh.call_sync("users", where) == UNUSED


def test_a_service_given_to_nested_overrides_is_kept_until_the_last_ends() -> None:
    mesh = ml.Mesh([ml.Service("users", [UNUSED])])
    seen: list[ml.Event] = []
    mesh.add_hook(seen.append)
    start = held(mesh)
    given = ml.Service("users", ["x"], pipeline=ml.Pipeline(), outlier_detection=None)
    with mesh.override("users", given):
        with mesh.override("users", given):
            given.eject("x")
        assert observed(mesh, given)
        given.restore("x")
    # Subscribed once (one event each), and let go of with the last override.
    assert [type(e).__name__ for e in seen].count("BackendEjected") == 1
    assert not observed(mesh, given)
    assert held(mesh) == start


def test_a_registered_service_given_to_an_override_stays_the_mesh_s() -> None:
    registered = ml.Service("users", [UNUSED])
    mesh = ml.Mesh([registered])
    seen: list[ml.Event] = []
    mesh.add_hook(seen.append)
    start = held(mesh)
    with mesh.override("users", registered) as service:
        assert service is registered
    registered.eject(UNUSED)
    assert sum(isinstance(e, BackendEjected) for e in seen) == 1  # hooked once
    assert observed(mesh, registered)
    assert held(mesh) == start


def test_an_override_whose_service_a_reload_removed_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text('services:\n  users:\n    backends: ["cfg:1"]\n'
                    '  orders:\n    backends: ["cfg:2"]\n', encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    start = held(mesh)
    mesh._targets = targets = ReadThen(mesh._targets)

    def remove_users() -> None:
        path.write_text('services:\n  orders:\n    backends: ["cfg:2"]\n', encoding="utf-8")
        assert mesh.reload_sync()

    targets.after = remove_users
    with pytest.raises(ml.ConfigError, match="no service named 'users'"), \
            mesh.override("users", ["x"]):
        raise AssertionError("the override started")
    assert mesh.config_version == 1
    assert held(mesh) == {**start, "metrics series": start["metrics series"] - 1}


async def test_a_response_still_being_read_when_the_override_ends_is_read_to_its_end(
) -> None:
    # Its attempt is over once the headers came; its connection is in use until the
    # body is read: the pools close after that, not under it.
    size = 4_000_000
    mesh = ml.Mesh([ml.Service("users", [UNUSED])])
    async with FakeBackend(body=b"x" * size) as fake, mesh.http("users") as client:
        start = held(mesh)
        override = mesh.override("users", fake)
        service = override.__enter__()
        async with client.stream("GET", "/big") as response:
            chunks = response.aiter_bytes()
            first = await anext(chunks)
            override.__exit__(None, None, None)
            assert observed(mesh, service)
            rest = b"".join([chunk async for chunk in chunks])
        assert len(first) + len(rest) == size
        await until(lambda: not observed(mesh, service), "the drained service let go of")
        assert held(mesh) == start
