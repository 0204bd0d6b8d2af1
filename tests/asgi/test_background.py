"""Work an app does after its response is complete (Starlette's and FastAPI's
background tasks), under a caller's deadline, through a real uvicorn server: the
caller had its whole answer, so its deadline no longer cuts the app short nor
bounds the mesh calls that work makes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as Path

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer


@pytest.mark.parametrize("routes", [[], [Route("/signup", rate=100.0, max_concurrent=4)]],
                         ids=["no-route-policy", "route-policies"])
async def test_a_background_task_outlives_the_callers_deadline(routes: list[Route]) -> None:
    finished: list[str] = []
    cut: list[str] = []
    budgets: list[float | None] = []

    async def send_welcome_mail(who: str) -> None:
        budgets.append(ml.remaining())  # (its mesh calls: their services' timeouts)
        try:
            await asyncio.sleep(0.4)  # past the caller's 150 ms, its answer long sent
        except asyncio.CancelledError:
            cut.append(who)
            raise
        finished.append(who)

    async def signup(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True}, background=BackgroundTask(send_welcome_mail, "ann"))

    app = MeshMiddleware(Starlette(routes=[Path("/signup", signup)]), trace=False,
                         routes=routes)
    async with AsgiServer(app) as server, httpx.AsyncClient() as client:
        answer = await client.get(server.url + "/signup",
                                  headers={"x-meshlite-deadline": "150"})
        for _ in range(1000):  # 0.4 s; 10 s at most on a loaded machine
            if finished or cut:
                break
            await asyncio.sleep(0.01)
    assert answer.status_code == 200
    assert (finished, cut) == (["ann"], [])
    assert budgets == [None]
    assert app.stats.routes()[0]["statuses"] == {"200": 1}
