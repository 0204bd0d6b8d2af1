"""A user's program, checked by mypy --strict in tests/test_typing.py (never run).

Each line that must be rejected carries ``# type: ignore[<code>]``: under
``warn_unused_ignores`` an ignore that silences nothing is an error, so such a line
passing unnoticed fails the test. ``reveal_type`` lines carry the type mypy must show
(``# revealed: ...``), which the test compares.
"""

from __future__ import annotations

import json
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, assert_type, reveal_type

import aiohttp
import httpx
import tenacity
from starlette.applications import Starlette

import meshlite as ml
import meshlite.asgi
import meshlite.config
import meshlite.discovery
import meshlite.routing
import meshlite.state
import meshlite.telemetry
from meshlite.asgi import MeshMiddleware, Route
from meshlite.config import MeshConfig

# -- 1. mesh.call / mesh.call_sync: fn's arguments are checked, its result is typed --


async def fetch_user(backend: ml.Backend, uid: int) -> dict[str, str]:
    return {"id": str(uid), "from": backend.address}


def fetch_user_sync(backend: ml.Backend, uid: int, *, full: bool = False) -> dict[str, str]:
    return {"id": str(uid), "from": backend.address}


async def mesh_calls(mesh: ml.Mesh) -> None:
    assert_type(await mesh.call("users", fetch_user, 1), dict[str, str])
    assert_type(await mesh.call("users", fetch_user_sync, 1, full=True), dict[str, str])
    assert_type(mesh.call_sync("users", fetch_user_sync, 1), dict[str, str])
    # the documented form (docs/mesh.md)
    reveal_type(await mesh.call("users", lambda backend: backend.address))  # revealed: str
    reveal_type(mesh.call_sync("users", lambda backend: backend.address))  # revealed: str
    await mesh.call("users", fetch_user, "1")  # type: ignore[call-overload]
    await mesh.call("users", fetch_user, 1, 2, 3)  # type: ignore[call-overload]
    mesh.call_sync("users", fetch_user_sync, "1")  # type: ignore[arg-type]
    mesh.call_sync("users", fetch_user_sync, 1, ful=True)  # type: ignore[call-arg]


# -- 2. a decorated function keeps its signature, sync or async, whatever it returns --

pipeline = ml.Pipeline(ml.Retry(attempts=3))


@pipeline
def load(text: str) -> Any:  # returns Any, as response.json() and json.loads do
    return json.loads(text)


@ml.Timeout(1.0)
def load_in_time(text: str) -> Any:
    return json.loads(text)


@ml.Cache(ttl=30.0)
def cached(uid: int) -> int:
    return uid


@pipeline
async def get_user(uid: int) -> dict[str, int]:
    return {"id": uid}


async def decorated() -> None:
    reveal_type(load)  # revealed: meshlite._policy.Decorated[[text: str], Any]
    reveal_type(load_in_time)  # revealed: meshlite._policy.Decorated[[text: str], Any]
    assert_type(cached(1), int)
    # one policy as a decorator is a one-policy pipeline, its .pipeline too
    assert_type(load_in_time.pipeline, ml.Pipeline)
    assert_type(cached.pipeline, ml.Pipeline)
    assert_type(await get_user(1), dict[str, int])
    load(1)  # type: ignore[arg-type]
    load("{}", 2)  # type: ignore[call-arg]
    load_in_time(text=1)  # type: ignore[arg-type]
    await get_user("1")  # type: ignore[arg-type]


# -- 2b. the decorated function's .pipeline (docs/recommended-order.md), methods too --


@ml.resilient
def bare(uid: int) -> int:
    return uid


@ml.resilient(timeout=2.0, retries=3)
async def fetch(uid: int) -> str:
    return str(uid)


class Users:
    @pipeline
    def name(self, uid: int) -> str:
        return str(uid)

    @ml.resilient(retries=1)
    async def aname(self, uid: int) -> str:
        return str(uid)


async def pipelines_of_decorated() -> None:
    assert_type(load.pipeline, ml.Pipeline)
    assert_type(get_user.pipeline, ml.Pipeline)
    assert_type(bare.pipeline, ml.Pipeline)
    assert_type(fetch.pipeline, ml.Pipeline)
    assert_type(ml.resilient(timeout=1.0), ml.Pipeline)
    assert_type(bare(1), int)
    assert_type(await fetch(1), str)
    coroutine: Coroutine[Any, Any, str] = fetch(1)
    assert_type(await coroutine, str)
    users = Users()
    assert_type(users.name(1), str)
    assert_type(Users.name(users, 1), str)
    assert_type(await users.aname(1), str)
    assert_type(users.name.pipeline, ml.Pipeline)
    users.name("1")  # type: ignore[arg-type]
    await users.aname(1, 2)  # type: ignore[call-arg]
    await fetch("1")  # type: ignore[arg-type]
    bare(uid=1, full=True)  # type: ignore[call-arg]


# -- 2c. what a policy takes, and what it refuses to decorate ----------------------


@ml.Hedge(0.1)
async def hedged(n: int) -> int:
    return n


@ml.Hedge(0.1)  # type: ignore[arg-type]  # hedging needs an async function
def hedged_sync(uid: int) -> int:
    return uid


async def policy_arguments() -> None:
    reveal_type(hedged)  # revealed: meshlite._policy.Decorated[[n: int], Coroutine[Any, Any, int]]
    assert_type(await hedged(1), int)
    ml.Retry(backoff=ml.backoff.exponential(initial=0.05, maximum=2.0))
    ml.Retry(backoff=lambda attempt, previous, rng: 0.1 * attempt)
    ml.Retry(backoff=tenacity.wait_exponential(multiplier=0.1))
    ml.Retry(backoff=tenacity.wait_fixed(1) + tenacity.wait_random(0, 1))
    ml.Retry(backoff="fast")  # type: ignore[arg-type]
    ml.Retry(backoff=0.5)  # type: ignore[arg-type]


# -- 3. lazily loaded names are real names: a misspelt one is an error, not an Any --


def lazy_names() -> None:
    assert_type(ml.CircuitBreaker(), ml.CircuitBreaker)
    assert_type(ml.Mesh(), ml.Mesh)
    assert_type(meshlite.config.load_config("mesh.yaml"), MeshConfig)
    ml.CircuitBreakr()  # type: ignore[attr-defined]
    ml.Pipline()  # type: ignore[attr-defined]
    meshlite.state.RedisStor("redis://")  # type: ignore[attr-defined]
    meshlite.config.load_confg("mesh.yaml")  # type: ignore[attr-defined]
    meshlite.routing.ServiceSnapshott()  # type: ignore[attr-defined]
    meshlite.telemetry.rendr()  # type: ignore[attr-defined]
    meshlite.discovery.DnsProvidr()  # type: ignore[attr-defined]


# -- 4. the documented exception-handler loop (docs/inbound.md) ---------------------


def exception_handlers() -> None:
    app = Starlette(exception_handlers=meshlite.asgi.exception_handlers())
    for error, handler in meshlite.asgi.exception_handlers().items():
        app.add_exception_handler(error, handler)


# -- 5. Route takes one method or scope, or a list, as documented --------------------


def routes() -> None:
    Route("/orders", methods=["POST"], scopes=["orders:write"])
    Route("/orders", methods="POST", scopes="orders:write")
    Route("/orders", methods=("GET", "POST"), scopes=("orders:read",), rate=10.0)
    assert_type(Route("/orders", methods=["POST"]).methods, tuple[str, ...] | None)
    Route("/orders", methods=[1])  # type: ignore[list-item]
    Route("/orders", mehtods=["POST"])  # type: ignore[call-arg]


# -- 6. the mesh's HTTP clients, and what it keeps of reloads and inbound ------------


def mesh_attributes(mesh: ml.Mesh) -> None:
    assert_type(mesh.http("users"), httpx.AsyncClient)
    assert_type(mesh.http_sync("users"), httpx.Client)
    assert_type(mesh.aiohttp("users"), aiohttp.ClientSession)
    assert_type(mesh.reload_errors, list[ml.ConfigError])
    assert_type(mesh.reload_errors[-1].errors, tuple[str, ...])
    assert_type(mesh.inbound, MeshMiddleware | None)


# -- 7. Mesh.from_config takes a path object and checks its keywords ----------------


def from_config(path: Path, name: str | os.PathLike[str]) -> None:
    assert_type(ml.Mesh.from_config(path), ml.Mesh)
    ml.Mesh.from_config(name, environ={}, profile="prod", hot_reload=False, dashboard=False,
                        clock=None, drain_timeout=5.0, metrics=False, name="shop")
    ml.Mesh.from_config("mesh.yaml", hot_relaod=True)  # type: ignore[call-arg]
    ml.Mesh.from_config("mesh.yaml", drain_timeout="5")  # type: ignore[arg-type]
    meshlite.config.mesh_from_config(path, nme="shop")  # type: ignore[call-arg]
    assert_type(meshlite.config.load_config(path), MeshConfig)


def watch(mesh: ml.Mesh, path: Path) -> None:
    # mesh.watch takes meshlite.config.watch's keywords and returns its watcher
    assert_type(mesh.watch(path, environ={}, profile="prod", step_ms=10),
                meshlite.config.ConfigWatcher)
    mesh.watch(path, profil="prod")  # type: ignore[call-arg]


# -- 8. a hook may return something (it is ignored) ----------------------------------

counts: dict[str, int] = {}


def count(event: ml.Event) -> bool:
    counts[event.policy] = counts.get(event.policy, 0) + 1
    return True


def hooks() -> None:
    ml.add_hook(count)
    ml.add_hook(lambda event: counts.setdefault(event.policy, 0))
    ml.Retry(attempts=2).add_hook(count)
    ml.add_hook(lambda: None)  # type: ignore[arg-type]


# -- 9. a Service of one backend -----------------------------------------------------


def services() -> None:
    ml.Service("users", ml.Backend("http://127.0.0.1:8001", weight=2))
    ml.Service("users", "http://127.0.0.1:8001")
    ml.Service("users", ["http://127.0.0.1:8001", ml.Backend("http://127.0.0.1:8002")])
    ml.Service("users", 8001)  # type: ignore[arg-type]


# -- 10. MeshMiddleware's mesh and audit ----------------------------------------------


async def asgi_app(scope: Any, receive: Any, send: Any) -> None: ...


def middleware(mesh: ml.Mesh) -> None:
    MeshMiddleware(asgi_app, mesh=mesh, audit=ml.AuditLog("audit.log"))
    MeshMiddleware(asgi_app, mesh=None, audit=None)
    MeshMiddleware(asgi_app, mesh="orders")  # type: ignore[arg-type]
    MeshMiddleware(asgi_app, audit="audit.log")  # type: ignore[arg-type]
