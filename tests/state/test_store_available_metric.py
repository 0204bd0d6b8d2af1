"""``meshlite_store_available``: whether each shared store a mesh's policies and
inbound quotas decide with answers, for an alert and a dashboard (the fallbacks
counter only rises while decisions are made). A real Redis killed and restarted."""

from __future__ import annotations

import time

from _exposition import by_label
from redis_server import RedisServer

import meshlite as ml
from meshlite.observability import render
from meshlite.state import RedisStore

RATE = 10_000_000.0  # never reached: every decision admits


def available(text: str) -> dict[str, float]:
    return by_label(text, "meshlite_store_available", "store")


def test_the_gauge_follows_the_store_down_and_back(fresh_server: RedisServer) -> None:
    store = RedisStore(fresh_server.url, timeout=1.0, retry_interval=0.05)
    limited = ml.Service("users", ["a:1"], pipeline=ml.Pipeline(
        ml.Retry(attempts=1), ml.RateLimit(RATE, store=store, name="q", mode="reject")))
    mesh = ml.Mesh([limited, ml.Service("plain", ["b:1"])])
    assert ml.observability.render(ml.Mesh([ml.Service("x", ["c:1"])])).count(
        "meshlite_store_available") == 0  # no shared store: no family
    assert mesh.call_sync("users", lambda b: 1) == 1
    label = fresh_server.url  # the store's label (a password in it not shown)
    assert available(render(mesh)) == {label: 1.0}
    fresh_server.kill()
    assert mesh.call_sync("users", lambda b: 1) == 1  # fell back
    assert available(render(mesh)) == {label: 0.0}
    fresh_server.start()
    deadline = time.monotonic() + 10.0
    while available(render(mesh))[label] == 0.0:  # a decision's probe finds it again
        assert time.monotonic() < deadline
        time.sleep(0.06)
        assert mesh.call_sync("users", lambda b: 1) == 1
    store.close()


def test_an_inbound_quota_s_store_is_reported(redis_server: RedisServer) -> None:
    import meshlite.asgi

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    store = RedisStore(redis_server.url, timeout=1.0)
    mesh = ml.Mesh([ml.Service("users", ["a:1"])])
    meshlite.asgi.MeshMiddleware(app, mesh=mesh, routes=[
        meshlite.asgi.Route("/orders/*", rate=5.0, store=store)])
    assert available(render(mesh)) == {redis_server.url: 1.0}
    store.close()
