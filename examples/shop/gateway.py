"""The gateway: ``GET /checkout/{item}`` places an order through the orders service."""

from __future__ import annotations

from shop import budget_ms, run, service
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def checkout(request: Request) -> JSONResponse:
    item = request.path_params["item"]
    budget = budget_ms()  # on arrival: what the caller's deadline left
    r = await mesh.http("orders").post("/orders", json={"item": item, "quantity": 1})
    # (an answer the mesh made, a 503 or 504, is JSON too; anything else is passed on)
    json_body = r.headers.get("content-type", "").startswith("application/json")
    return JSONResponse({"gateway_budget_ms": budget,
                         "order": r.json() if json_body else r.text},
                        status_code=r.status_code)


mesh, app = service("gateway", [Route("/checkout/{item}", checkout)])

if __name__ == "__main__":
    run(app, "gateway")
