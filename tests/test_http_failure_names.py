"""A backend that is down: the error each mesh HTTP client raises once routing gives up
names the service and the backend in its message, and keeps its type (callers catch
``httpx.ConnectError`` / ``aiohttp.ClientConnectorError``; ``ml.is_transient``
classifies it)."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest
from _workers import free_port

import meshlite as ml


@pytest.fixture
async def down() -> AsyncIterator[tuple[ml.Mesh, str]]:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    mesh = ml.Mesh([ml.Service("inventory", [address])])
    async with mesh:
        yield mesh, address


def _named(error: BaseException, address: str) -> None:
    text = str(error)
    assert "service 'inventory'" in text
    assert f"backend {address}" in text
    assert ml.is_transient(error)


async def test_mesh_http_names_the_service_and_backend(down: tuple[ml.Mesh, str]) -> None:
    mesh, address = down
    with pytest.raises(httpx.ConnectError) as caught:
        await mesh.http("inventory").get("/items")
    assert type(caught.value) is httpx.ConnectError
    _named(caught.value, address)
    assert "Cannot connect to host" in str(caught.value)  # the wire's words, after ours


async def test_mesh_http_sync_names_the_service_and_backend(
        down: tuple[ml.Mesh, str]) -> None:
    mesh, address = down

    def get() -> None:
        with pytest.raises(httpx.ConnectError) as caught:
            mesh.http_sync("inventory").get("/items")
        assert type(caught.value) is httpx.ConnectError
        _named(caught.value, address)
        assert "Connection refused" in str(caught.value)

    await asyncio.to_thread(get)


async def test_mesh_aiohttp_names_the_service_and_backend(
        down: tuple[ml.Mesh, str]) -> None:
    mesh, address = down
    async with mesh.aiohttp("inventory") as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get("/items")
    error = caught.value
    assert type(error) is aiohttp.ClientConnectorError
    _named(error, address)
    # its attributes are kept
    assert (error.host, error.os_error.errno) == ("127.0.0.1", errno.ECONNREFUSED)
