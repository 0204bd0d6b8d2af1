"""Use one feature of each extra as a user would, against real loopback servers.

Run as ``python _extras_probe.py REDIS_URL [FEATURE...]`` by
tests/test_wheel_minimums.py, in an environment holding ``meshlite-mesh[all]`` at the
lowest versions pyproject.toml allows (and by a quick test, in this one), and by
tests/test_extras.py, once per extra with the FEATURES of that extra alone
(``EXTRAS``) where the libraries of the others cannot be imported. Prints one
``name: ok`` line per feature (every one when none is named), or ``name: FAILED ...``
with the error; exits 0 when all are ok.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
import urllib.request
from collections.abc import Callable
from http import server as http_server
from typing import Any

import meshlite as ml
from meshlite.testing import FakeBackend

FEATURES: dict[str, Callable[[], Any]] = {}


def feature(fn: Callable[[], Any]) -> Callable[[], Any]:
    FEATURES[fn.__name__] = fn
    return fn


def _mesh(url: str, **service: Any) -> ml.Mesh:
    return ml.Mesh([ml.Service("users", backends=[url], **service)])


@feature
async def config_hot_reload() -> None:
    """The core's config libraries: YAML and TOML files, validated, watched."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    (folder / "mesh.toml").write_text('[services.users]\nbackends = ["http://127.0.0.1:9"]\n')
    assert ml.Mesh.from_config(folder / "mesh.toml").service("users") is not None
    path = folder / "mesh.yaml"
    path.write_text("hot_reload: true\nservices:\n  users: {backends: [http://127.0.0.1:9]}\n")
    async with ml.Mesh.from_config(path) as mesh:
        first = mesh.config_version
        await asyncio.sleep(0.2)
        path.write_text("hot_reload: true\nservices:\n  users: {backends: [http://127.0.0.1:9]}\n"
                        "  orders: {backends: [http://127.0.0.1:10]}\n")
        for _ in range(100):
            if mesh.config_version > first:
                break
            await asyncio.sleep(0.05)
        assert mesh.service("orders").backends[0].address == "http://127.0.0.1:10"


@feature
async def http() -> None:
    async with FakeBackend() as backend, _mesh(backend.url) as mesh:
        assert (await mesh.http("users").get("/a")).status_code == 200


@feature
async def http_sync() -> None:
    async with FakeBackend() as backend:
        mesh = _mesh(backend.url)

        def get() -> int:
            with mesh.http_sync("users") as client:
                return client.get("/a").status_code

        assert await asyncio.to_thread(get) == 200
        mesh.close()


@feature
async def aiohttp() -> None:
    async with FakeBackend() as backend, _mesh(backend.url) as mesh:
        response = await mesh.aiohttp("users").get("/a")
        assert response.status == 200
        response.release()


@feature
async def health_check() -> None:
    async with FakeBackend() as backend:
        async with _mesh(backend.url, health_check=ml.HttpHealthCheck(interval=0.05)):
            for _ in range(100):  # a check every 50 ms; a loaded machine's come later
                if any(r.path == "/healthz" for r in backend.requests):
                    break
                await asyncio.sleep(0.05)
        assert any(r.path == "/healthz" for r in backend.requests)


@feature
async def dashboard() -> None:
    import websockets

    async with _mesh("http://127.0.0.1:9") as mesh:
        server = await mesh.serve_dashboard(port=0)
        try:
            for path in ("/", "/api/services", "/metrics", "/static/app.js"):
                with await asyncio.to_thread(urllib.request.urlopen, server.url + path) as r:
                    assert r.status == 200, path
            ws_url = server.url.replace("http", "ws", 1) + "/ws"
            async with websockets.connect(ws_url) as ws:
                assert "users" in str(await asyncio.wait_for(ws.recv(), 10))
        finally:
            await server.stop()


@feature
async def redis() -> None:
    from meshlite.state import RedisStore

    store = RedisStore(sys.argv[1], on_error="raise")
    pipeline = ml.Pipeline(ml.Cache(ttl=10.0, store=store),
                           ml.CircuitBreaker(name="probe", store=store),
                           ml.RateLimit(rate=100.0, store=store))

    async def double(x: int) -> int:
        return 2 * x

    assert [await pipeline.acall(double, 3) for _ in range(2)] == [6, 6]
    assert await asyncio.to_thread(pipeline.call, lambda: 1) == 1


@feature
def otlp() -> None:
    paths: list[str] = []

    class Receiver(http_server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ml.telemetry.configure("probe", otlp_endpoint=f"http://127.0.0.1:{server.server_port}")
        ml.Pipeline(ml.Trace(name="probe")).call(lambda: 1)
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        assert "/v1/traces" in paths, paths
    finally:
        server.shutdown()


@feature
def prometheus() -> None:
    import prometheus_client

    from meshlite.observability import PrometheusCollector

    registry = prometheus_client.CollectorRegistry()
    registry.register(PrometheusCollector(_mesh("http://127.0.0.1:9")))
    assert b"meshlite_" in prometheus_client.generate_latest(registry)


@feature
def jwt() -> None:
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    import meshlite.asgi

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    verify = meshlite.asgi.jwt_verifier(public)   # the default algorithms: RS256, ES256
    token = pyjwt.encode({"sub": "ada", "exp": 2**33}, key, algorithm="ES256")
    assert verify(token).subject == "ada"


@feature
def interop() -> None:
    import aiolimiter
    import pybreaker
    import tenacity

    ml.CircuitBreaker.from_pybreaker(pybreaker.CircuitBreaker())
    ml.RateLimit.from_aiolimiter(aiolimiter.AsyncLimiter(10, 1))
    assert ml.Pipeline(ml.Retry(attempts=2, backoff=tenacity.wait_fixed(0.01))).call(
        lambda: 3) == 3


EXTRAS: dict[str, tuple[str, ...]] = {
    "": ("config_hot_reload",),  # the core, no extra
    "http": ("http", "http_sync", "health_check"),
    "aiohttp": ("aiohttp",),
    "otlp": ("otlp",),
    "redis": ("redis",),
    "dashboard": ("dashboard",),
    "interop": ("interop",),
    "jwt": ("jwt",),
    "prometheus": ("prometheus",),
}
"""The features each extra of pyproject.toml brings (with the core's), by extra."""


def main(names: list[str]) -> int:
    failed = 0
    for name in names or FEATURES:
        fn = FEATURES[name]
        try:
            result = fn()
            if asyncio.iscoroutine(result):
                asyncio.run(result)
            print(f"{name}: ok", flush=True)
        except BaseException as error:  # report every feature, then fail
            failed += 1
            where = traceback.extract_tb(error.__traceback__)[-1]
            print(f"{name}: FAILED {type(error).__name__}: {error} "
                  f"({where.filename}:{where.lineno})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[2:]))
