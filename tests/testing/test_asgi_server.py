"""AsgiServer serves a team's own ASGI app, its lifespan too when asked."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

import meshlite as ml

pytest.importorskip("uvicorn", reason="AsgiServer needs uvicorn (the dashboard extra)")
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from meshlite.testing import AsgiServer


def users_app(events: list[str], fail_startup: bool = False) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        if fail_startup:
            raise RuntimeError("no database")
        app.state.users = {"1": "ada"}
        yield
        events.append("shutdown")

    async def user(request: Request) -> JSONResponse:
        return JSONResponse({"name": request.app.state.users[request.path_params["uid"]]})

    return Starlette(routes=[Route("/users/{uid}", user)], lifespan=lifespan)


async def test_the_apps_lifespan_runs_around_the_block() -> None:
    events: list[str] = []
    async with AsgiServer(users_app(events), lifespan=True) as server, \
            httpx.AsyncClient() as client:
        assert events == ["startup"]
        reply = await client.get(f"{server.url}/users/1")
        assert reply.json() == {"name": "ada"}
    assert events == ["startup", "shutdown"]


async def test_a_failing_startup_is_an_error_not_an_exit() -> None:
    events: list[str] = []
    with pytest.raises(RuntimeError, match="AsgiServer failed to start") as raised:
        async with AsgiServer(users_app(events, fail_startup=True), lifespan=True):
            pytest.fail("served an app whose startup failed")
    assert "lifespan startup failed" in str(raised.value.__cause__)
    assert events == ["startup"]


async def test_without_lifespan_the_app_gets_http_scopes_only() -> None:
    events: list[str] = []
    async with AsgiServer(users_app(events)) as server, httpx.AsyncClient() as client:
        assert (await client.get(f"{server.url}/users/1")).status_code == 500  # no state
    assert events == []


def test_lifespan_must_be_a_bool() -> None:
    with pytest.raises(ml.ConfigError, match=r"AsgiServer: lifespan must be True or False, "
                                             r"got 'on'"):
        AsgiServer(users_app([]), lifespan="on")  # type: ignore[arg-type]


async def test_a_busy_port_names_asgi_server() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError, match="in use") as raised:
            async with AsgiServer(users_app([]), port=busy.getsockname()[1]):
                pytest.fail("listened on a busy port")
    assert any(note.startswith("AsgiServer: cannot listen") for note in raised.value.__notes__)
