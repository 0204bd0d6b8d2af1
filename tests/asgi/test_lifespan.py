"""The lifespan through MeshMiddleware: a mesh the app's lifespan opened and left
open is closed when it shuts down (tests/asgi/test_sigterm_under_load.py shows why,
under uvicorn); a mesh opened elsewhere is left as it is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette

import meshlite as ml
import meshlite.asgi


async def _run_lifespan(app: Any) -> list[str]:
    """Drive ``app``'s lifespan (startup, then shutdown) as a server does; return
    the types of the messages it sent."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    return sent


def _app(mesh: ml.Mesh, lifespan: Callable[[Any], AbstractAsyncContextManager[None]]
         ) -> Any:
    return meshlite.asgi.MeshMiddleware(Starlette(lifespan=lifespan), mesh=mesh)


async def test_a_mesh_the_lifespan_opened_and_left_open_is_closed_with_a_warning() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        await mesh.start()  # no aclose()
        yield

    with pytest.warns(ResourceWarning, match=r"Mesh\(\['users'\], state='open'\) was left "
                      r"open when the app's lifespan that opened it shut down"):
        sent = await _run_lifespan(_app(mesh, lifespan))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert mesh.state == "closed"


async def test_a_mesh_opened_outside_the_lifespan_is_left_open() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield

    async with mesh:  # a test's fixture, say, around several lifespans
        for _ in range(2):
            await _run_lifespan(_app(mesh, lifespan))
            assert mesh.state == "open"


async def test_a_lifespan_that_closes_its_mesh_says_nothing() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        async with mesh:
            yield

    await _run_lifespan(_app(mesh, lifespan))  # (filterwarnings = error)
    assert mesh.state == "closed"
