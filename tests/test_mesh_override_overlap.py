"""Overrides of one service whose blocks overlap without nesting (two tasks sharing
a mesh, an ``ExitStack`` left out of order) end in any order: calls go to the most
recent override still running, else to the registered service, and none is left
in force once its block ended (real FakeBackends and real HTTP clients)."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.testing import FakeBackend


def served_by(client: httpx.Client, backends: list[FakeBackend]) -> FakeBackend:
    """The backend that answers one request of ``client``."""
    before = [b.request_count for b in backends]
    assert client.get("/users/1").status_code == 200
    [answering] = [b for b, n in zip(backends, before, strict=True) if b.request_count > n]
    return answering


@pytest.mark.parametrize("order", [(0, 1), (1, 0), (0, 2, 1), (1, 0, 2), (2, 0, 1)])
def test_overrides_ending_in_any_order_leave_the_latest_live_one_in_force(
        order: tuple[int, ...]) -> None:
    with contextlib.ExitStack() as servers:
        registered, *fakes = [servers.enter_context(FakeBackend())
                              for _ in range(len(order) + 1)]
        everyone = [registered, *fakes]
        mesh = ml.Mesh([ml.Service("users", [registered.url], pipeline=ml.Pipeline())])
        with mesh.http_sync("users") as client:
            blocks = [mesh.override("users", fake) for fake in fakes]
            for block in blocks:  # entered in turn: the last one is in force
                block.__enter__()
            live = list(range(len(fakes)))
            assert served_by(client, everyone) is fakes[live[-1]]
            for ending in order:  # then ended in ``order``
                blocks[ending].__exit__(None, None, None)
                live.remove(ending)
                expected = fakes[live[-1]] if live else registered
                assert served_by(client, everyone) is expected, (ending, live)
            assert [b.address for b in mesh.service("users").backends] == [registered.url]
            assert mesh._extra == []  # every override's service let go of
        mesh.close()


@pytest.mark.parametrize("kind", ["object", "transport"])
def test_fakes_of_overlapping_overrides_are_not_left_in_force(kind: str) -> None:
    # Fakes that are no service: an object passed to mesh.call, an httpx transport.
    with FakeBackend() as registered:
        mesh = ml.Mesh([ml.Service("users", [registered.url], pipeline=ml.Pipeline())])

        def fake(name: str) -> Any:
            if kind == "object":
                return SimpleNamespace(name=name)
            return httpx.MockTransport(lambda request: httpx.Response(200, text=name))

        a, b = fake("a"), fake("b")
        first, second = mesh.override("users", a), mesh.override("users", b)
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert mesh.target("users") is b
        second.__exit__(None, None, None)
        assert mesh.target("users") is mesh.service("users")
        assert mesh.call_sync("users", lambda backend: backend.address) == registered.url
        with mesh.http_sync("users") as client:
            response = client.get("/users/1")
        assert response.json()["path"] == "/users/1"  # from the registered backend
        assert registered.request_count == 1
        mesh.close()


async def test_two_tasks_overriding_a_shared_mesh_leave_it_as_they_found_it() -> None:
    async with FakeBackend() as registered, FakeBackend() as first, \
            FakeBackend() as second:
        mesh = ml.Mesh([ml.Service("users", [registered.url], pipeline=ml.Pipeline())])
        second_began, first_ended = asyncio.Event(), asyncio.Event()

        async def task(fake: FakeBackend, began: asyncio.Event | None,
                       wait: asyncio.Event | None, ended: asyncio.Event | None) -> str:
            with mesh.override("users", fake):
                if began is not None:
                    began.set()
                if wait is not None:
                    await wait.wait()
                answer: str = await mesh.call("users", lambda backend: backend.address)
            if ended is not None:
                ended.set()
            return answer

        # The first begins, the second begins, the first ends, the second ends.
        seen = await asyncio.gather(task(first, None, second_began, first_ended),
                                    task(second, second_began, first_ended, None))
        assert seen == [second.url, second.url]  # one mesh: the latest override wins
        assert await mesh.call("users", lambda backend: backend.address) == registered.url
        async with mesh.http("users") as client:
            assert (await client.get("/users/1")).status_code == 200
        assert (registered.request_count, first.request_count, second.request_count) == (
            1, 0, 0)
        await mesh.aclose()
