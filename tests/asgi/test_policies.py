"""Inbound policies per route under real uvicorn: quotas per client (429), shared
through Redis, concurrency limits (503), body size (413), timeouts (504), validation
(422), and the rate-limited audit of refusals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _system import require_program
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route as Path

import meshlite as ml
from meshlite.asgi import Auth, MeshMiddleware, Route
from meshlite.testing import AsgiServer, FakeBackend


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers 200 with the request body; sleeps ``?sleep=`` seconds first."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    query = scope.get("query_string", b"").decode()
    if query.startswith("sleep="):
        await asyncio.sleep(float(query[6:]))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class Holding:
    """Wraps an app: its first request waits inside until :attr:`release` is set
    (:attr:`inside` says it got there); later requests go straight through."""

    def __init__(self, app: Any) -> None:
        self.app, self.inside, self.release = app, asyncio.Event(), asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.inside.is_set():
            self.inside.set()
            await self.release.wait()
        await self.app(scope, receive, send)


async def serve(app: Any) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    async with AsgiServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        yield server.url, client


KEYS = {"k-alice": ("alice", ["orders:read"]), "k-bob": ("bob", ["orders:read",
                                                                "orders:write"])}


async def test_quota_per_client_answers_429_with_retry_after_and_spares_others() -> None:
    app = MeshMiddleware(echo, auth=Auth(api_keys=KEYS), routes=[
        Route("/orders/*", rate=2.0, per=60.0, burst=2)])
    async for _, client in serve(app):
        alice = [(await client.get("/orders/1", headers={"x-api-key": "k-alice"})).status_code
                 for _ in range(4)]
        refused = await client.get("/orders/1", headers={"x-api-key": "k-alice"})
        bob = await client.get("/orders/1", headers={"x-api-key": "k-bob"})
        other_route = await client.get("/health", headers={"x-api-key": "k-alice"})
    assert alice == [200, 200, 429, 429]
    assert refused.json()["error"] == "rate_limited"
    assert 20 <= int(refused.headers["retry-after"]) <= 30  # one slot per 30 s
    assert bob.status_code == 200
    assert other_route.status_code == 200


def test_a_quota_keyed_by_api_key_needs_keys_that_are_checked() -> None:
    # Without Auth(api_keys=...) nothing checks the header: each request could name a
    # new key, and a new quota with it.
    routes = [Route("/login", rate=2.0, per=60.0, key="api_key")]
    for auth in (None, Auth(verify=lambda token: None)):
        with pytest.raises(ml.ConfigError, match=r"MeshMiddleware: auth must be an Auth "
                                                 r"with api_keys= when a route's quota is "
                                                 r"keyed by 'api_key' \('/login'\)"):
            MeshMiddleware(echo, auth=auth, routes=routes)
    MeshMiddleware(echo, auth=Auth(api_keys=KEYS), routes=routes)


async def test_quota_key_function_and_redis_store_shared_by_two_replicas(
        tmp_path: Any) -> None:
    binary = require_program("redis-server", "redis-server")
    from state.redis_server import RedisServer

    from meshlite.state import RedisStore

    server = RedisServer(binary).start()
    try:
        stores = [RedisStore(server.url, prefix="inbound-test") for _ in range(2)]

        def tenant(request: ml.asgi.Inbound) -> str:
            return request.headers.get("x-tenant", "none")

        apps = [MeshMiddleware(echo, routes=[Route("/*", rate=3.0, per=60.0, key=tenant,
                                                   store=s)]) for s in stores]
        async with AsgiServer(apps[0]) as one, AsgiServer(apps[1]) as two, \
                httpx.AsyncClient() as client:
            codes = [(await client.get(url + "/", headers={"x-tenant": "acme"})).status_code
                     for url in (one.url, two.url, one.url, two.url)]
            other = await client.get(two.url + "/", headers={"x-tenant": "globex"})
        for s in stores:
            await s.aclose()
    finally:
        server.close()
    assert codes == [200, 200, 200, 429]  # one quota across both replicas
    assert other.status_code == 200


async def test_concurrency_limit_answers_503_with_retry_after() -> None:
    held = Holding(echo)
    app = MeshMiddleware(held, routes=[Route("/slow", max_concurrent=1)])
    async for _, client in serve(app):
        slow = asyncio.ensure_future(client.get("/slow"))
        await held.inside.wait()  # the one slot is taken until released
        refused = await client.get("/slow")
        held.release.set()
        assert (await slow).status_code == 200
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "overloaded"


async def test_adaptive_load_shedding_is_a_route_option() -> None:
    limiter = ml.AdaptiveConcurrency(initial_limit=1, min_limit=1, max_limit=1)
    held = Holding(echo)
    app = MeshMiddleware(held, routes=[Route("/*", adaptive=limiter)])
    async for _, client in serve(app):
        slow = asyncio.ensure_future(client.get("/"))
        await held.inside.wait()  # the limit of one is in use until released
        shed = await client.get("/")
        held.release.set()
        await slow
    assert shed.status_code == 503
    assert "retry-after" in shed.headers


async def test_body_size_limit_413_declared_and_chunked() -> None:
    app = MeshMiddleware(echo, routes=[Route("/upload", max_body=10)])

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"xxxxx"

    async for _, client in serve(app):
        small = await client.post("/upload", content=b"tiny")
        big = await client.post("/upload", content=b"x" * 11)
        streamed = await client.post("/upload", content=chunks())
    assert small.status_code == 200
    assert small.content == b"tiny"
    assert big.status_code == 413
    assert streamed.status_code == 413


async def test_route_timeout_answers_504() -> None:
    # 0.5 s: the quick request's answer is within it on a loaded machine too.
    app = MeshMiddleware(echo, routes=[Route("/*", timeout=0.5)])
    async for _, client in serve(app):
        assert (await client.get("/?sleep=5")).status_code == 504
        assert (await client.get("/")).status_code == 200


async def test_auth_401_403_and_scopes_per_route(caplog: pytest.LogCaptureFixture) -> None:
    app = MeshMiddleware(echo, auth=Auth(api_keys=KEYS), routes=[
        Route("/orders", methods=["POST"], scopes=("orders:write",)),
        Route("/orders", scopes=("orders:read",))])
    caplog.set_level(logging.DEBUG)
    async for _, client in serve(app):
        anonymous = await client.get("/orders")
        wrong = await client.get("/orders", headers={"x-api-key": "k-nobody"})
        alice_read = await client.get("/orders", headers={"x-api-key": "k-alice"})
        alice_write = await client.post("/orders", headers={"x-api-key": "k-alice"})
        bob_write = await client.post("/orders", headers={"x-api-key": "k-bob"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert alice_read.status_code == 200
    assert alice_write.status_code == 403
    assert alice_write.json()["message"] == "the credentials lack the scope 'orders:write'"
    assert bob_write.status_code == 200
    assert "k-nobody" not in caplog.text
    assert "k-alice" not in caplog.text


async def test_keys_file_hot_reload(tmp_path: Any) -> None:
    path = tmp_path / "keys"
    path.write_text("alice k-one orders:read\n")
    keys = ml.asgi.ApiKeys.from_file(path, reload_interval=0.0)
    app = MeshMiddleware(echo, auth=Auth(api_keys=keys), routes=[Route("/*", auth=True)])
    async for _, client in serve(app):
        before = await client.get("/", headers={"x-api-key": "k-two"})
        path.write_text("alice k-one orders:read\nbob k-two  # the new key\n")
        after = await client.get("/", headers={"x-api-key": "k-two"})
        path.write_text("broken\n")
        kept = await client.get("/", headers={"x-api-key": "k-two"})
    assert (before.status_code, after.status_code, kept.status_code) == (401, 200, 200)
    assert "k-one" not in repr(keys)


def test_keys_from_env_and_bad_entries() -> None:
    keys = ml.asgi.ApiKeys.from_env("KEYS", {"KEYS": "svc-a key-a read;svc-b key-b"})
    principal = keys.lookup("key-a")
    assert principal is not None
    assert principal.subject == "svc-a"
    assert principal.scopes == {"read"}
    with pytest.raises(ml.ConfigError, match="entry 1 of \\$KEYS") as info:
        ml.asgi.ApiKeys.from_env("KEYS", {"KEYS": "lonely-secret"})
    assert "lonely-secret" not in str(info.value)


async def test_jwt_bearer_tokens() -> None:
    import time

    import jwt

    secret = "s" * 32
    verify = ml.asgi.jwt_verifier(secret, algorithms=["HS256"], audience="shop")
    app = MeshMiddleware(echo, auth=Auth(verify=verify), routes=[
        Route("/*", scopes=("orders:read",))])

    def token(**claims: Any) -> str:
        base = {"sub": "alice", "aud": "shop", "exp": time.time() + 60,
                "scope": "orders:read"}
        return jwt.encode({**base, **claims}, secret, algorithm="HS256")

    async for _, client in serve(app):
        good = await client.get("/", headers={"authorization": f"Bearer {token()}"})
        expired = await client.get("/", headers={
            "authorization": f"Bearer {token(exp=time.time() - 5)}"})
        unscoped = await client.get("/", headers={"authorization": f"Bearer {token(scope='')}"})
        other_aud = await client.get("/", headers={
            "authorization": f"Bearer {token(aud='else')}"})
    assert good.status_code == 200
    assert (expired.status_code, unscoped.status_code, other_aud.status_code) == (401, 403, 401)
    with pytest.raises(ml.ConfigError, match="never 'none'"):
        ml.asgi.jwt_verifier(secret, algorithms=["none"])


async def test_jwt_algorithms_given_as_one_name_verify_tokens() -> None:
    import time

    import jwt

    secret = "s" * 32
    app = MeshMiddleware(echo, routes=[Route("/*", auth=True)], auth=Auth(
        verify=ml.asgi.jwt_verifier(secret, algorithms="HS256")))
    token = jwt.encode({"sub": "alice", "exp": time.time() + 60}, secret, algorithm="HS256")
    async for _, client in serve(app):
        good = await client.get("/", headers={"authorization": f"Bearer {token}"})
    assert good.status_code == 200
    for bad in ("hs256", ["HS256", "RS257"], [5], 5):  # each would refuse every token
        with pytest.raises(ml.ConfigError, match="jwt_verifier: algorithms must be"):
            ml.asgi.jwt_verifier(secret, algorithms=bad)
    with pytest.raises(ml.ConfigError, match="jwt_verifier: leeway must be >= 0"):
        ml.asgi.jwt_verifier(secret, algorithms="HS256", leeway=-5)
    other_service = jwt.encode({"sub": "alice", "exp": time.time() + 60, "aud": "billing"},
                               secret, algorithm="HS256")
    assert ml.asgi.jwt_verifier(secret, algorithms="HS256")(other_service) is None
    entra = jwt.encode({"sub": "alice", "exp": time.time() + 60, "scp": "orders:read mail"},
                       secret, algorithm="HS256")
    principal = ml.asgi.jwt_verifier(secret, algorithms="HS256")(entra)
    assert principal is not None
    assert principal.scopes == {"orders:read", "mail"}


async def test_validation_422_lists_the_errors_and_the_app_still_reads_the_body() -> None:
    from pydantic import BaseModel

    class Order(BaseModel):
        item: str
        quantity: int

    app = MeshMiddleware(echo, routes=[Route("/orders", methods=["POST"], validate=Order)])
    async for _, client in serve(app):
        good = await client.post("/orders", json={"item": "tea", "quantity": 2})
        bad = await client.post("/orders", json={"item": "tea", "quantity": "many"})
        junk = await client.post("/orders", content=b"{not json")
    assert good.status_code == 200
    assert good.json() == {"item": "tea", "quantity": 2}
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid"
    assert any("quantity" in e for e in bad.json()["errors"])
    assert "many" not in bad.text  # fields and expectations, never the value
    assert junk.status_code == 400


async def test_refusals_are_audited_once_per_interval_per_client(tmp_path: Any) -> None:
    log = ml.AuditLog(tmp_path / "audit.jsonl")
    app = MeshMiddleware(echo, audit=log, auth=Auth(api_keys=KEYS),
                         routes=[Route("/*", rate=1.0, per=60.0, key="ip")])
    async for _, client in serve(app):
        for _ in range(20):
            await client.get("/")
        for _ in range(5):
            await client.get("/", headers={"x-api-key": "k-wrong"})
    records = log.read()
    assert [r["action"] for r in records] == ["inbound.quota_exhausted",
                                              "inbound.auth_failed"]
    assert records[0]["actor"] == "ip:127.0.0.1"
    assert "k-wrong" not in (tmp_path / "audit.jsonl").read_text()


async def test_red_metrics_per_route_and_callers() -> None:
    from meshlite.observability._prometheus import render

    app = MeshMiddleware(echo, routes=[Route("/orders/{id}"), Route("/boom", timeout=0.05)])
    async for _, client in serve(app):
        await client.get("/orders/1", headers={"x-meshlite-caller": "gateway"})
        await client.get("/orders/2", headers={"x-meshlite-caller": "gateway"})
        await client.get("/boom?sleep=1", headers={"x-meshlite-caller": "gateway"})
        await client.get("/orders/3", headers={"x-meshlite-caller": "bad name!"})
    text = render(app.stats)
    assert ('meshlite_server_requests_total{route="/orders/{id}",method="GET",status="200"} 3'
            in text)
    assert 'meshlite_server_requests_total{route="/boom",method="GET",status="504"} 1' in text
    assert 'meshlite_server_request_duration_seconds_count{route="/orders/{id}"' in text
    (edge,) = app.stats.callers(__import__("time").monotonic())
    assert (edge["caller"], edge["requests"], edge["errors"]) == ("gateway", 3, 1)


async def test_configure_refuses_routes_needing_credentials_without_auth() -> None:
    app = MeshMiddleware(echo, auth=Auth(api_keys=KEYS),
                         routes=[Route("/orders", scopes=("orders:read",))])
    with pytest.raises(ml.ConfigError, match=r"MeshMiddleware\.configure: auth must be an Auth"):
        app.configure([Route("/orders", scopes=("orders:write",))])  # auth left out
    with pytest.raises(ml.ConfigError, match=r"auth must be a meshlite\.asgi\.Auth"):
        app.configure([Route("/orders")], auth="k-alice")  # type: ignore[arg-type]
    async for _, client in serve(app):
        anonymous = await client.get("/orders")
        alice = await client.get("/orders", headers={"x-api-key": "k-alice"})
    assert anonymous.status_code == 401  # the routes and auth in force were kept
    assert alice.status_code == 200


async def test_one_method_given_as_a_string_is_that_method() -> None:
    app = MeshMiddleware(echo, auth=Auth(api_keys=KEYS),
                         routes=[Route("/orders", methods="post", scopes=("orders:write",))])
    assert app.table.routes[0].route.methods == ("POST",)
    async for _, client in serve(app):
        anonymous = await client.post("/orders")
        alice = await client.post("/orders", headers={"x-api-key": "k-alice"})
        listing = await client.get("/orders")
    assert (anonymous.status_code, alice.status_code, listing.status_code) == (401, 403, 200)
    for bad in (5, [], ["GET /orders"], [None]):
        with pytest.raises(ml.ConfigError, match="Route: methods must be HTTP method names"):
            Route("/orders", methods=bad)


async def test_one_scope_given_alone_is_that_scope_and_bad_keys_are_named() -> None:
    keys = ml.asgi.ApiKeys({"k-admin": ("ops", "admin")})  # not the scopes a, d, m, i, n
    app = MeshMiddleware(echo, auth=Auth(api_keys=keys), routes=[
        Route("/admin", scopes=("admin",)), Route("/a", scopes=("a",))])
    async for _, client in serve(app):
        admin = await client.get("/admin", headers={"x-api-key": "k-admin"})
        letter = await client.get("/a", headers={"x-api-key": "k-admin"})
    assert (admin.status_code, letter.status_code) == (200, 403)
    for bad in ([("k-secret", "ops")], {"k-secret": ("ops", 5)},
                {"k-secret": ("ops", "a", "b")}):
        with pytest.raises(ml.ConfigError, match="ApiKeys: keys") as info:
            ml.asgi.ApiKeys(bad)  # type: ignore[arg-type]
        assert "k-secret" not in str(info.value)
    with pytest.raises(ml.ConfigError, match="Auth: api_key_header must be a header name"):
        Auth(api_keys=keys, api_key_header="x api key")


def test_middleware_options_of_the_wrong_kind_are_named() -> None:
    for option, value, valid in (("mesh", "orders", "an ml.Mesh or None"),
                                 ("trace", "no", "True or False"),
                                 ("audit", "refusals.log", "an ml.AuditLog or None")):
        with pytest.raises(ml.ConfigError, match=f"MeshMiddleware: {option} must be {valid}"):
            MeshMiddleware(echo, **{option: value})


def test_a_hash_inside_a_key_is_part_of_it_not_a_comment() -> None:
    keys = ml.asgi.ApiKeys.from_env("KEYS", {"KEYS": "alice k#Zq81 read  # alice's key\n"
                                                      "# a comment line; bob k-bob"})
    alice = keys.lookup("k#Zq81")
    assert alice is not None
    assert (alice.subject, alice.scopes) == ("alice", {"read"})
    assert keys.lookup("k") is None  # never the part before the '#'
    assert keys.lookup("k-bob") is not None


def test_a_missing_key_file_is_reported_once_and_read_again_when_back(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys"
    path.write_text("alice k-one read\n")
    keys = ml.asgi.ApiKeys.from_file(path, reload_interval=0.0)
    path.unlink()  # a deploy replacing the file, or a volume gone for a while
    with caplog.at_level(logging.ERROR, logger="meshlite.inbound"):
        assert all(keys.lookup("k-one") is not None for _ in range(5))  # the keys stay
    assert len(caplog.records) == 1
    path.write_text("alice k-one read\nbob k-two\n")
    assert keys.lookup("k-two") is not None
    with pytest.raises(ml.ConfigError, match=r"ApiKeys\.from_file: reload_interval must be"):
        ml.asgi.ApiKeys.from_file(path, reload_interval="1")  # type: ignore[arg-type]


async def test_api_key_quotas_read_the_header_auth_names() -> None:
    keys = {"k-alice": ("alice", ["read"]), "k-bob": ("bob", ["read"])}
    app = MeshMiddleware(echo, auth=Auth(api_keys=keys, api_key_header="X-Token"), routes=[
        Route("/*", rate=1.0, per=60.0, key="api_key")])
    async for _, client in serve(app):
        alice = [(await client.get("/", headers={"x-token": "k-alice"})).status_code
                 for _ in range(2)]
        bob = await client.get("/", headers={"x-token": "k-bob"})  # same address, own key
    assert (alice, bob.status_code) == ([200, 429], 200)


@pytest.mark.parametrize(("algorithms", "key", "needed"), [
    ("HS256", "s" * 31, 32),
    (["HS256", "HS512"], "s" * 40, 64),
    ("HS384", b"k" * 47, 48),
])
def test_a_jwt_hmac_secret_shorter_than_its_hash_is_refused(
        algorithms: Any, key: Any, needed: int) -> None:
    # RFC 7518 3.2: a shorter secret can be guessed offline from any one token.
    with pytest.raises(ml.ConfigError, match=f"jwt_verifier: key .*at least {needed} bytes"
                       ) as info:
        ml.asgi.jwt_verifier(key, algorithms=algorithms)
    assert str(key) not in str(info.value)
    assert "s" * 31 not in str(info.value)


def test_a_long_enough_jwt_hmac_secret_is_accepted() -> None:
    assert callable(ml.asgi.jwt_verifier("s" * 64, algorithms=["HS256", "HS512"]))
    assert callable(ml.asgi.jwt_verifier(b"k" * 48, algorithms="HS384"))


async def test_a_validated_route_without_max_body_does_not_buffer_any_size() -> None:
    # validate= reads the body into memory before the app: without a max_body of its
    # own the route takes DEFAULT_VALIDATED_BODY, so a huge (chunked) body is a 413,
    # not a memory spike.
    from pydantic import BaseModel

    from meshlite._inbound._routes import DEFAULT_VALIDATED_BODY

    class Note(BaseModel):
        text: str

    assert DEFAULT_VALIDATED_BODY == 1 << 20
    huge = b'{"text": "' + b"x" * (2 << 20) + b'"}'

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(huge), 65536):
            yield huge[i:i + 65536]

    app = MeshMiddleware(echo, routes=[
        Route("/notes", methods=["POST"], validate=Note),
        Route("/big", methods=["POST"], validate=Note, max_body=4 << 20)])
    async for _, client in serve(app):
        declared = await client.post("/notes", content=huge)
        streamed = await client.post("/notes", content=chunked())
        small = await client.post("/notes", json={"text": "hi"})
        allowed = await client.post("/big", content=huge)
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert small.status_code == 200
    assert allowed.status_code == 200


async def test_short_client_deadlines_do_not_open_a_services_breaker() -> None:
    # A client's x-meshlite-deadline bounds the mesh calls made for its request: a
    # client asking for less time than the backend needs gets 504s, and the service's
    # breaker, which every caller shares, stays closed. The service's own Timeout
    # cutting the same slow backend opens it.
    breaker = ml.CircuitBreaker(window=2, min_calls=2, open_seconds=30.0, name="stock")
    async with FakeBackend(latency=0.5) as backend:
        mesh = ml.Mesh([ml.Service("stock", [backend.url], pipeline=ml.Pipeline(
            ml.Timeout(0.2), breaker))])

        async def view(request: Any) -> Any:
            r = await mesh.http("stock").get("/")
            return JSONResponse({"status": r.status_code})

        app = MeshMiddleware(Starlette(routes=[Path("/", view)]), mesh=mesh)
        async with mesh:
            async for _, client in serve(app):
                for _ in range(3):
                    r = await client.get("/", headers={"x-meshlite-deadline": "50"})
                    assert r.status_code == 504
                assert (breaker.state, breaker.metrics().calls) == ("closed", 0)
                for _ in range(2):
                    assert (await client.get("/")).status_code == 504
                assert breaker.state == "open"
                assert (await client.get("/")).status_code == 503


async def test_a_key_functions_long_keys_are_kept_as_digests() -> None:
    # The limiter kept each key as the client sent it: 8 KB tenant headers held
    # about 84 MB at its cap of keys (and named a shared store's keys after them).
    route = Route("/orders/*", rate=1.0, per=60.0, burst=1,
                  key=lambda r: r.headers.get("x-tenant", "none"))
    app = MeshMiddleware(echo, routes=[route])
    async for _, client in serve(app):
        statuses = [(await client.get("/orders/1", headers={"x-tenant": tenant})).status_code
                    for tenant in ("a" * 8000, "a" * 8000, "b" * 8000, "short", "short")]
    assert statuses == [200, 429, 200, 200, 429]  # one quota per tenant, as before
    (limiter,) = [p for p in app.table.routes[0].pipeline.policies
                  if isinstance(p, ml.RateLimit)]
    kept = list(limiter._state._tats)  # type: ignore[union-attr]
    assert sorted(len(str(k)) for k in kept) == [5, 68, 68]  # "short", two digests


def test_scopes_given_as_a_list_are_kept_as_a_tuple_and_none_is_named() -> None:
    # A list was kept as it was given (the field is a tuple: the route unhashable,
    # its repr unlike the others'), and scopes=None raised a bare TypeError.
    route = Route("/admin", scopes=["admin", "ops"])
    assert route.scopes == ("admin", "ops")
    assert hash(route) == hash(Route("/admin", scopes=("admin", "ops")))
    with pytest.raises(ml.ConfigError, match=r"^Route: scopes must be a scope name or a "
                                             r"sequence of them, got None"):
        Route("/admin", scopes=None)  # type: ignore[arg-type]
