"""Fallback answering HTTP requests through the mesh, and a sync handler that returns
something to await."""

from __future__ import annotations

import httpx
import pytest

import meshlite as ml
from meshlite.testing import BackendFactory, MeshFactory


async def test_a_value_an_http_client_cannot_take_is_refused_naming_the_service(
        fake_backend: BackendFactory, mesh: MeshFactory) -> None:
    backend = fake_backend(error_rate=1.0)  # every answer a 503
    # as docs/config.md's complete example writes it: fallback: {value: null, ...}
    m = mesh(ml.Service("users", [backend.url], pipeline=ml.Pipeline(
        ml.Fallback(value=None))))
    refused = r"Fallback: value must be an httpx.Response to answer a request of service 'users'"
    async with m.http("users") as users:
        with pytest.raises(ml.ConfigError, match=refused) as raised:
            await users.get("/users/1")
    assert raised.value.__context__ is not None  # the failure it answered for
    with m.http_sync("users") as sync_users, pytest.raises(ml.ConfigError, match=refused):
        sync_users.get("/users/1")
    async with m.aiohttp("users") as session:
        with pytest.raises(ml.ConfigError, match=r"Fallback: a mesh.aiohttp\(\) request of "
                                                 r"service 'users' cannot be answered"):
            await session.get("/users/1")
    # mesh.call's answers are any value
    assert await m.call("users", lambda backend: _fail()) is None


def _fail() -> None:
    raise ConnectionError("down")


async def test_each_request_gets_its_own_copy_of_a_fallback_response(
        fake_backend: BackendFactory, mesh: MeshFactory) -> None:
    backend = fake_backend(error_rate=1.0)
    cached = httpx.Response(200, json={"stale": True})
    m = mesh(ml.Service("users", [backend.url], pipeline=ml.Pipeline(
        ml.Fallback(value=cached))))
    async with m.http("users") as users:
        first = await users.get("/users/1")
        second = await users.get("/users/2")
    assert first is not second
    assert first is not cached
    assert first.request.url.path == "/users/1"
    assert first.json() == second.json() == {"stale": True}
    with m.http_sync("users") as sync_users:
        assert sync_users.get("/users/3").json() == {"stale": True}


def test_a_sync_handler_returning_a_coroutine_is_refused_naming_the_handler() -> None:
    async def stale(error: BaseException) -> str:
        return "stale"

    def fail() -> str:
        raise ConnectionError("down")

    fallback = ml.Fallback(handler=lambda error: stale(error))  # not a coroutine function
    with pytest.raises(ml.ConfigError, match=r"Fallback: handler .*<lambda>.* returned "
                                             r"coroutine .*which a sync call cannot await"):
        ml.Pipeline(fallback).call(fail)
