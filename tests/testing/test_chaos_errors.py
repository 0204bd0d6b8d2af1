"""chaos(error=SomeClass) with the classes a team injects into an HTTP service."""

from __future__ import annotations

import httpx
import pytest

import meshlite as ml
from meshlite.testing import BackendFactory, Chaos, MeshFactory


def test_an_error_class_that_needs_a_message_is_injected(
        fake_backend: BackendFactory, mesh: MeshFactory, chaos: Chaos) -> None:
    backend = fake_backend()
    m = mesh(ml.Service("users", [backend.url], pipeline=ml.Pipeline(
        ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0),
                 on=(httpx.ConnectError,)))))
    fault = chaos("users", error=httpx.ConnectError)  # its constructor needs a message
    with m.http_sync("users") as users, pytest.raises(httpx.ConnectError) as raised:
        users.get("/users/1")
    assert "injected by meshlite FaultInjection" in raised.value.__notes__
    assert fault.injected == 3  # every attempt got it: Retry saw a real ConnectError
    assert backend.requests == []  # nothing was sent
    fault.remove()
    with m.http_sync("users") as users:
        assert users.get("/users/1").status_code == 200


class Coded(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)


def test_a_class_that_cannot_be_made_is_refused_when_injected(
        mesh: MeshFactory, chaos: Chaos) -> None:
    mesh(ml.Service("users", ["http://127.0.0.1:9"]))
    with pytest.raises(ml.ConfigError, match=r"FaultInjection: error must be an exception class "
                                             r"that can be made with no arguments or with a "
                                             r"message .*Coded"):
        chaos("users", error=Coded)
    assert chaos.faults == []  # nothing half-applied
    with pytest.raises(ml.ConfigError, match="Coded"):
        ml.FaultInjection(1.0, error=Coded)


async def test_an_injected_connection_error_reaches_an_aiohttp_caller_with_its_note(
        fake_backend: BackendFactory, mesh: MeshFactory, chaos: Chaos) -> None:
    import aiohttp

    backend = fake_backend()
    m = mesh(ml.Service("users", [backend.url], pipeline=ml.Pipeline()))
    chaos("users")  # the default: ConnectionError
    async with m.aiohttp("users") as users:
        with pytest.raises(aiohttp.ClientOSError) as raised:
            await users.get("/users/1")
    # aiohttp's type for an OSError in a request, and still says it was injected
    assert "injected by meshlite FaultInjection" in raised.value.__notes__
    assert type(raised.value.__cause__) is ConnectionError


async def test_a_result_an_http_client_cannot_take_is_refused_naming_the_service(
        fake_backend: BackendFactory, mesh: MeshFactory, chaos: Chaos) -> None:
    backend = fake_backend()
    m = mesh(ml.Service("users", [backend.url], pipeline=ml.Pipeline()))
    with chaos("users", result={"canned": True}):
        with m.http_sync("users") as users, pytest.raises(
                ml.ConfigError, match=r"result must be an httpx.Response .*'users'"):
            users.get("/users/1")
        async with m.aiohttp("users") as session:
            with pytest.raises(ml.ConfigError, match=r"mesh.aiohttp\(\) request of service "
                                                     r"'users' cannot be answered"):
                await session.get("/users/1")
    canned = httpx.Response(200, json={"canned": True})
    with chaos("users", result=canned), m.http_sync("users") as users:
        assert users.get("/users/1").json() == {"canned": True}
    assert backend.requests == []
