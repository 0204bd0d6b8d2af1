"""Orders: ``POST /orders`` checks stock with inventory, then charges through payments."""

from __future__ import annotations

import uuid

from shop import budget_ms, run, service
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def place(request: Request) -> JSONResponse:
    budget = budget_ms()  # on arrival: what the gateway's deadline left
    order = await request.json()
    stock = await mesh.http("inventory").get(f"/stock/{order['item']}")
    if stock.status_code != 200:
        return JSONResponse({"error": "inventory unavailable"}, status_code=503)
    # An idempotency key makes the POST safe to retry (the mesh retries it then).
    charge = await mesh.http("payments").post(
        "/charge", json={"amount": 10}, headers={"idempotency-key": uuid.uuid4().hex})
    return JSONResponse({"orders_budget_ms": budget, "inventory": stock.json(),
                         "charged": charge.status_code == 200},
                        status_code=200 if charge.status_code == 200 else 502)


mesh, app = service("orders", [Route("/orders", place, methods=["POST"])])

if __name__ == "__main__":
    run(app, "orders")
