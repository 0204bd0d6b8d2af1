"""What the four shop services share: each is a Starlette app whose mesh comes from its
own config file, opened for the app's lifetime, behind ``meshlite.asgi.MeshMiddleware``
(its inbound routes come from the same file's ``inbound:`` section).

Run one service with ``SHOP_PORT=8102 python examples/shop/orders.py``: ``SHOP_PORT`` is
the port it serves on (the URLs of the services it calls come from the environment
too, ``SHOP_INVENTORY_URL``..., by default the ports of ``PORTS``);
``meshlite demo --services`` starts all four and drives traffic through them. They
need the ``http``, ``dashboard`` and ``otlp`` extras
(``pip install 'meshlite-mesh[http,dashboard,otlp]'``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
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


PORTS = {"gateway": 8101, "orders": 8102, "inventory": 8103, "payments": 8104}
"""The port of each service that its callers' config files name when no
``SHOP_<NAME>_URL`` says otherwise (``${SHOP_ORDERS_URL:-http://127.0.0.1:8102}``)."""


def run(app: Any, name: str) -> None:
    """Serve ``app``, the service ``name``, on 127.0.0.1:$SHOP_PORT until SIGTERM/SIGINT;
    without ``SHOP_PORT``, exit saying how to set it."""
    port = os.environ.get("SHOP_PORT")
    if not port:
        sys.exit(f"{name}: set SHOP_PORT, the port to serve on; its callers expect "
                 f"{PORTS[name]}: SHOP_PORT={PORTS[name]} python {sys.argv[0]}")
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning",
                access_log=False)
