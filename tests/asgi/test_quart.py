"""MeshMiddleware around a Quart app, under a real uvicorn server: the caller's
deadline reaches an async view as ``ml.remaining()``, a route's quota answers 429
with ``Retry-After``, and a meshlite error raised in a view is 503, not Quart's 500."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer

try:
    import quart
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Quart is not installed (a dev dependency); CI=true, so this is a "
                    "failure", pytrace=False)
    pytest.skip("Quart is not installed (pip install quart)", allow_module_level=True)


def quart_app() -> Any:
    app = quart.Quart(__name__)

    @app.route("/budget")
    async def budget() -> Any:
        return {"remaining": ml.remaining()}

    @app.route("/broken")
    async def broken() -> Any:
        raise ml.CircuitOpenError("open", policy="circuit_breaker", retry_after=4.0)

    @app.route("/boom")
    async def boom() -> Any:
        raise RuntimeError("not a meshlite error")

    return app


async def test_quart_app_behind_the_middleware() -> None:
    app = MeshMiddleware(quart_app(), trace=False,
                         routes=[Route("/budget", rate=1.0, burst=1, key="ip")])
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        first = await client.get(server.url + "/budget",
                                 headers={"x-meshlite-deadline": "1500"})
        second = await client.get(server.url + "/budget")
        broken = await client.get(server.url + "/broken")
        boom = await client.get(server.url + "/boom")
    assert first.status_code == 200
    assert 0.75 < first.json()["remaining"] <= 1.5  # less the time spent (a loaded machine's)
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert broken.status_code == 503  # Quart alone would answer 500
    assert broken.headers["retry-after"] == "4"
    assert broken.json()["error"] == "circuit_open"
    assert boom.status_code == 500  # unmapped errors stay the framework's
    assert {r["route"]: r["statuses"] for r in app.stats.routes()} == {
        "/budget": {"200": 1, "429": 1}, "*": {"500": 1, "503": 1}}


async def test_wrapping_quarts_asgi_app_attribute_maps_errors_too() -> None:
    app = quart_app()
    app.asgi_app = MeshMiddleware(app.asgi_app, trace=False)  # type: ignore[method-assign]
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        broken = await client.get(server.url + "/broken")
        fine = await client.get(server.url + "/budget")
    assert broken.status_code == 503
    assert fine.json() == {"remaining": None}
