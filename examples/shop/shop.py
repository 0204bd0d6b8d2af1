"""What the four shop services share: each is a Starlette app whose mesh comes from its
own config file, opened for the app's lifetime, behind ``meshlite.asgi.MeshMiddleware``
(its inbound routes come from the same file's ``inbound:`` section).

Run one service with ``python examples/shop/orders.py`` (``SHOP_PORT``, and the URLs
of the services it calls, come from the environment); ``meshlite demo --services``
starts all four and drives traffic through them.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import meshlite as ml
import meshlite.asgi

HERE = pathlib.Path(__file__).parent


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def service(name: str, routes: Sequence[Route]) -> tuple[ml.Mesh, Any]:
    """The mesh (from ``<name>.yaml``) and the ASGI app of service ``name``."""
    mesh = ml.Mesh.from_config(str(HERE / f"{name}.yaml"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mesh:
            yield

    app = Starlette(routes=[Route("/healthz", healthz), *routes], lifespan=lifespan)
    return mesh, meshlite.asgi.MeshMiddleware(app, mesh=mesh)


def budget_ms() -> float | None:
    """The request's remaining budget in milliseconds (its caller's deadline)."""
    left = ml.remaining()
    return None if left is None else round(left * 1000.0, 1)


def run(app: Any) -> None:
    """Serve ``app`` on 127.0.0.1:$SHOP_PORT until SIGTERM/SIGINT."""
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["SHOP_PORT"]),
                log_level="warning", access_log=False)
