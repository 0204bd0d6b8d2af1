"""A closed mesh's HTTP clients refuse every request, routed or passed through to
another host, with MeshClosedError, and make no connection pool: one made then would
be closed by no one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import meshlite as ml
from meshlite.routing import MeshClosedError
from meshlite.testing import FakeBackend


@pytest.fixture
async def two() -> AsyncIterator[tuple[FakeBackend, FakeBackend]]:
    async with FakeBackend() as backend, FakeBackend() as other:
        yield backend, other


def _no_pools_left(mesh: ml.Mesh) -> None:
    assert mesh._http is None  # no pool registry (so no connection) made after the close


async def test_a_closed_mesh_http_client_refuses_every_request(
        two: tuple[FakeBackend, FakeBackend]) -> None:
    backend, other = two
    mesh = ml.Mesh([ml.Service("users", [backend.url])])
    async with mesh, mesh.http("users") as client:
        assert (await client.get("/a")).status_code == 200
        assert (await client.get(f"{other.url}/b")).status_code == 200  # passthrough
    async with mesh.http("users") as client:  # a client made after the close too
        for url in ("/a", f"{other.url}/b"):
            with pytest.raises(MeshClosedError, match="closed"):
                await client.get(url)
    assert (backend.stats.requests, other.stats.requests) == (1, 1)
    _no_pools_left(mesh)


def _after_close(mesh: ml.Mesh, urls: tuple[str, ...]) -> list[str]:
    refused = []
    with mesh.http_sync("users") as client:
        for url in urls:
            try:
                client.get(url)
            except MeshClosedError:
                refused.append(url)
    return refused


def test_a_closed_mesh_http_sync_client_refuses_every_request() -> None:
    with FakeBackend() as backend, FakeBackend() as other:
        mesh = ml.Mesh([ml.Service("users", [backend.url])])
        with mesh, mesh.http_sync("users") as client:
            assert client.get(f"{other.url}/b").status_code == 200
        urls = ("/a", f"{other.url}/b")
        assert _after_close(mesh, urls) == list(urls)
        assert (backend.stats.requests, other.stats.requests) == (0, 1)
        _no_pools_left(mesh)


async def test_a_reopened_mesh_serves_again(two: tuple[FakeBackend, FakeBackend]) -> None:
    backend, other = two
    mesh = ml.Mesh([ml.Service("users", [backend.url])])
    async with mesh:
        pass
    async with mesh, mesh.http("users") as client:
        assert (await client.get("/a")).status_code == 200
        assert (await client.get(f"{other.url}/b")).status_code == 200
    assert (backend.stats.requests, other.stats.requests) == (1, 1)
