"""A careless verifier and a dependency's bad answer under a real uvicorn server:
neither may let a request in that lacks a scope, nor blame (and tell) the client
for what a dependency sent."""

from __future__ import annotations

from typing import Any

import httpx
import pydantic
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route as Path

import meshlite as ml
from meshlite.asgi import Auth, MeshMiddleware, Principal, Route
from meshlite.testing import AsgiServer, FakeBackend


async def test_a_scope_string_handed_on_as_it_came_grants_no_scope_it_merely_contains() -> None:
    def verify(token: str) -> Principal | None:
        # A token's `scope` claim as it came: one string, names separated by spaces.
        return Principal("bob", "orders:read orders:write") if token == "t" else None  # type: ignore[arg-type]

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("in")

    app = MeshMiddleware(Starlette(routes=[Path("/{p:path}", hello)]), trace=False,
                         auth=Auth(verify=verify), routes=[
        Route("/orders", scopes="orders"),          # "orders" is in "orders:read"
        Route("/admin", scopes="admin"),
        Route("/write", scopes="orders:write"),     # named whole: granted
    ])
    bearer = {"authorization": "Bearer t"}
    async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/orders", headers=bearer)).status_code == 403
        assert (await client.get("/admin", headers=bearer)).status_code == 403
        assert (await client.get("/write", headers=bearer)).status_code == 200
    assert Principal("bob", "a b").scopes == frozenset({"a", "b"})
    assert Principal("bob", ["a", "a"]).scopes == frozenset({"a"})  # type: ignore[arg-type]


class Stock(pydantic.BaseModel):
    sku: str
    warehouse_shard: int


async def test_a_dependencys_answer_failing_validation_is_no_422_naming_its_fields() -> None:
    async with FakeBackend() as inventory:
        inventory.set(body={"sku": 7})  # no warehouse_shard, sku not a string
        checked = ml.Pipeline(ml.Validate(result=Stock))

        async def stock(request: Any) -> JSONResponse:
            async with httpx.AsyncClient() as client:
                answer = await checked.acall(
                    lambda: _json(client.get(inventory.url + "/stock/tea")))
            return JSONResponse(answer)

        async def order(request: Any) -> JSONResponse:
            return JSONResponse({"ok": True})

        app = MeshMiddleware(Starlette(routes=[Path("/stock", stock),
                                               Path("/orders", order, methods=["POST"])]),
                             trace=False, routes=[Route("/orders", validate=Stock)])
        async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
            failed = await client.get("/stock")
            refused = await client.post("/orders", json={"sku": "tea"})
    # The service failed, not the request: the framework's 500, and nothing of the
    # dependency's answer (its fields, what they should have been) reaches the client.
    assert failed.status_code == 500
    assert "warehouse_shard" not in failed.text
    assert "sku" not in failed.text
    # The request's own body failing the route's validation is still the client's 422.
    assert refused.status_code == 422
    assert refused.json()["errors"] == ["body.warehouse_shard: Field required"]


async def _json(sent: Any) -> Any:
    return (await sent).json()
