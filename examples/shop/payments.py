"""Payments: ``POST /charge``. ``SHOP_FAULT_RATE`` (0 to 1) makes that share of charges
fail with 503, as a bad deploy would: the fault the demo injects."""

from __future__ import annotations

import os
import random

from shop import run, service
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FAULT_RATE = float(os.environ.get("SHOP_FAULT_RATE", "0"))


async def charge(request: Request) -> JSONResponse:
    await request.body()
    if random.random() < FAULT_RATE:
        return JSONResponse({"error": "payment processor unavailable"}, status_code=503)
    return JSONResponse({"charged": True})


mesh, app = service("payments", [Route("/charge", charge, methods=["POST"])])

if __name__ == "__main__":
    run(app, "payments")
