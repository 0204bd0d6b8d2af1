"""The request target (raw path and query) a backend gets through mesh.http(),
mesh.http_sync() and mesh.aiohttp(), compared with what the same plain httpx or aiohttp
client sends for the same URL (a raw loopback server records the request line)."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import httpx
import pytest
from _raw_http import RawServer

import meshlite as ml

TARGETS = ["/x?", "/x?a=1&a=2", "/x?a=%2F", "/x/%2F/y", "/x#frag", "/x?#frag", "/x??",
           "/x?a?"]
"""Relative URLs whose target a client might spell otherwise: an empty query, repeated
and escaped parameters, an escaped slash in the path, a fragment (never sent)."""

PREFIXES = ["", "/v1"]
"""Paths of the backend's base URL (the plain client's ``base_url``)."""


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    made = RawServer()
    yield made
    made.close()


def _targets(server: RawServer) -> list[str]:
    return [head.split(b" ")[1].decode("ascii") for head, _ in server.take()]


def _mesh(base: str, **http_pool: object) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", [base], pipeline=ml.Pipeline(),
                               http_pool=http_pool or None)])


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_async_client_sends_the_target_plain_httpx_sends(
        server: RawServer, prefix: str) -> None:
    base = server.url + prefix
    async with httpx.AsyncClient(base_url=base) as plain:
        for target in TARGETS:
            await plain.get(target)
    expected = _targets(server)
    assert expected[0] == f"{prefix}/x?"
    # the aiohttp wire (the default) and httpcore (an option only it honours)
    for mesh in (_mesh(base), _mesh(base, retries=1)):
        async with mesh:
            client = mesh.http("users")
            for target in TARGETS:
                await client.get(target)
            assert _targets(server) == expected  # the aiohttp wire sent /x for /x?
            for target in TARGETS:  # a URL of another host passes through unrouted
                await client.get(base + target)
            assert _targets(server) == expected


@pytest.mark.parametrize("prefix", PREFIXES)
def test_sync_client_sends_the_target_plain_httpx_sends(
        server: RawServer, prefix: str) -> None:
    base = server.url + prefix
    with httpx.Client(base_url=base) as plain:
        for target in TARGETS:
            plain.get(target)
    expected = _targets(server)
    with _mesh(base).http_sync("users") as client:
        for target in TARGETS:
            client.get(target)
        assert _targets(server) == expected
        for target in TARGETS:
            client.get(base + target)
        assert _targets(server) == expected


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_aiohttp_session_sends_the_target_plain_aiohttp_sends(
        server: RawServer, prefix: str) -> None:
    base = server.url + prefix
    async with aiohttp.ClientSession() as plain:
        for target in TARGETS:
            async with plain.get(base + target) as response:
                await response.read()
    expected = _targets(server)
    # aiohttp's own spelling (yarl's), which a mesh session keeps: no empty query
    assert expected[:3] == [f"{prefix}/x", f"{prefix}/x?a=1&a=2", f"{prefix}/x?a=/"]
    async with _mesh(base) as mesh:
        session = mesh.aiohttp("users")
        for target in TARGETS:
            async with session.get(target) as response:
                await response.read()
        assert _targets(server) == expected
