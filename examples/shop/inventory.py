"""Inventory, the innermost service: ``GET /stock/{item}`` answers the stock and the
deadline budget it was handed (reduced by every hop before it)."""

from __future__ import annotations

from shop import budget_ms, run, service
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def stock(request: Request) -> JSONResponse:
    return JSONResponse({"item": request.path_params["item"], "stock": 7,
                         "inventory_budget_ms": budget_ms()})


mesh, app = service("inventory", [Route("/stock/{item}", stock)])

if __name__ == "__main__":
    run(app, "inventory")
