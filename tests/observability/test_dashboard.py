"""The dashboard over a real loopback socket: REST, the WebSocket feed, /metrics,
the page, bind rules and token auth.

Each test starts a real uvicorn server on a free port (``port=0``). Samples are
forced with ``server.monitor.tick()`` where a test needs data at once; one test
waits for the real once-a-second push."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _ws import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import meshlite as ml
from meshlite.observability._dashboard import AlertRule
from meshlite.observability._dashboard._server import DashboardServer

TOKEN = "s3cr3t-token-for-tests-0123456789"
SECRET_ARG = "card-4111-1111-1111-1111"


def make_mesh() -> ml.Mesh:
    return ml.Mesh([
        ml.Service("users", ["http://127.0.0.1:80", "http://127.0.0.2:80"],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db"))),
        ml.Service("orders", ["http://127.0.0.3:80"], pipeline=ml.Pipeline()),
    ])


async def drive(mesh: ml.Mesh, n: int = 20, fail_every: int = 4) -> None:
    for i in range(n):
        async def call(backend: Any, card: str, i: int = i) -> str:
            if i % fail_every == 0:
                raise ConnectionError("refused")
            return "ok"

        with contextlib.suppress(ConnectionError):
            await mesh.call("users", call, SECRET_ARG)


@pytest.fixture
async def mesh() -> ml.Mesh:
    return make_mesh()


@pytest.fixture
async def server(mesh: ml.Mesh) -> AsyncIterator[DashboardServer]:
    srv = await mesh.serve_dashboard(port=0)
    yield srv
    await srv.stop()


async def sample_by_hand(srv: DashboardServer) -> None:
    """Stop the once-a-second sampler (the server keeps serving) so the test's own
    ``monitor.tick()`` sees all of its traffic."""
    await srv.monitor.stop()


_TLS = ssl.create_default_context()  # unused on http://, but httpx builds one per client


def client(srv: DashboardServer, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.url, trust_env=False, verify=_TLS, **kwargs)


def ws_url(srv: DashboardServer, query: str = "") -> str:
    return srv.url.replace("http://", "ws://") + "/ws" + query


# -- lifecycle and binding ------------------------------------------------------------


async def test_port_zero_gives_real_port_and_stop_closes(mesh: ml.Mesh) -> None:
    srv = await mesh.serve_dashboard(port=0)
    assert srv.port > 0
    assert srv.url == f"http://127.0.0.1:{srv.port}"
    async with client(srv) as c:
        assert (await c.get("/api/health")).status_code == 200
    await srv.stop()
    await srv.stop()  # idempotent
    assert not srv.running
    with pytest.raises(httpx.ConnectError):
        async with client(srv) as c:
            await c.get("/api/health")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.com"])
async def test_non_loopback_host_without_token_is_refused(mesh: ml.Mesh, host: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"host '{host}' is not a loopback"):
        await mesh.serve_dashboard(host=host, port=0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"port": -1}, "port"), ({"port": "80"}, "port"), ({"token": "short"}, "token"),
    ({"token": "has a space in it 0123456789"}, "token"), ({"max_clients": 0}, "max_clients"),
])
async def test_bad_arguments(mesh: ml.Mesh, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"serve_dashboard: {field} must be") as info:
        await mesh.serve_dashboard(**kwargs)
    assert "short" not in str(info.value)  # a token is never echoed


async def test_busy_port_is_an_oserror(mesh: ml.Mesh) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use") as info:
            await mesh.serve_dashboard(port=taken.getsockname()[1])
    assert "pick another port" in "".join(info.value.__notes__)


# -- REST ---------------------------------------------------------------------------------


async def test_rest_endpoints(mesh: ml.Mesh, server: DashboardServer) -> None:
    await sample_by_hand(server)
    await drive(mesh)
    server.monitor.tick()
    async with client(server) as c:
        health = (await c.get("/api/health")).json()
        assert health["status"] == "healthy"
        # the fast path answers exactly what the health records say
        assert health["services"] == {
            n: json.loads(json.dumps(h.as_dict())) for n, h in mesh.health().items()}
        assert health["services"]["users"]["available"] == 2
        services = (await c.get("/api/services")).json()["services"]
        assert [s["name"] for s in services] == ["users", "orders"]
        users = (await c.get("/api/services/users")).json()
        assert (users["requests"], users["errors"]) == (20, 5)
        assert users["breakers"] == {"users-db": "closed"}
        assert users["last_second"]["requests"] == 20
        assert [b["address"] for b in users["health"]["backends"]] == [
            "http://127.0.0.1:80", "http://127.0.0.2:80"]
        history = (await c.get("/api/services/users/history?seconds=60")).json()
        assert len(history["requests"]) == 60
        assert history["requests"][-1] == 20
        assert history["errors"][-1] == 5
        assert history["step"] == 1


async def test_a_services_requests_are_attempts_and_its_last_second_calls() -> None:
    # docs/dashboard.md: a retried call counts twice in `requests`, once in
    # `last_second.requests`; a backend taken out takes its attempts with it.
    users = ml.Service("users", ["http://127.0.0.1:80", "http://127.0.0.2:80"],
                       balancer="round_robin", outlier_detection=None,
                       pipeline=ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0))))
    mesh = ml.Mesh([users])
    srv = await mesh.serve_dashboard(port=0)
    try:
        await sample_by_hand(srv)

        async def fails_on_the_second(backend: Any) -> str:
            if backend.address.endswith(".2:80"):
                raise ConnectionError("refused")
            return "ok"

        for _ in range(10):
            await mesh.call("users", fails_on_the_second)
        srv.monitor.tick()
        async with client(srv) as c:
            service = (await c.get("/api/services/users")).json()
            assert (service["requests"], service["errors"]) == (15, 5)
            assert (service["last_second"]["requests"],
                    service["last_second"]["attempts"]) == (10, 15)
            users.set_backends(["http://127.0.0.1:80"])
            assert (await c.get("/api/services/users")).json()["requests"] == 10
    finally:
        await srv.stop()


async def test_unknown_service_and_bad_query_are_json_errors(server: DashboardServer) -> None:
    async with client(server) as c:
        for path in ("/api/services/nope", "/api/services/nope/history"):
            r = await c.get(path)
            assert r.status_code == 404
            assert r.json() == {"error": "no service named 'nope'"}
        assert (await c.post("/api/health")).status_code == 405
        head = await c.head("/api/health")
        assert head.status_code == 200
        assert head.content == b""
        r = await c.get("/api/services/users/history?seconds=99999")
        assert r.status_code == 400
        assert "seconds must be" in r.json()["error"]
        assert (await c.get("/api/nothing")).status_code == 404


async def test_history_is_empty_before_first_sample(server: DashboardServer) -> None:
    await sample_by_hand(server)
    async with client(server) as c:
        history = (await c.get("/api/services/orders/history")).json()
    assert history["start"] is None
    assert history["requests"] == []


async def test_alerts_endpoint(mesh: ml.Mesh, server: DashboardServer) -> None:
    await sample_by_hand(server)
    mesh.alerts.add(AlertRule("errors", "error_rate", threshold=0.1, service="users"))
    await drive(mesh)
    server.monitor.tick()
    async with client(server) as c:
        alerts = (await c.get("/api/alerts")).json()
    assert [r["name"] for r in alerts["rules"]] == ["errors"]
    [firing] = alerts["firing"]
    assert (firing["service"], firing["value"]) == ("users", 0.25)


async def test_metrics_and_page(mesh: ml.Mesh, server: DashboardServer) -> None:
    await drive(mesh)
    async with client(server) as c:
        metrics = await c.get("/metrics")
        page = await c.get("/")
        script = await c.get("/static/app.js")
        missing = await c.get("/static/nope.js")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'meshlite_requests_total{service="users"} 20' in metrics.text
    assert page.status_code == 200
    assert "<canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.headers["content-type"].startswith("text/javascript")
    assert missing.status_code == 404
    assert "http://" not in page.text
    assert "https://" not in script.text


async def test_call_arguments_never_exposed(mesh: ml.Mesh, server: DashboardServer) -> None:
    await sample_by_hand(server)
    await drive(mesh)
    update = json.dumps(server.monitor.tick())
    async with client(server) as c:
        bodies = [(await c.get(p)).text for p in (
            "/api/services", "/api/services/users", "/api/health", "/api/alerts", "/metrics",
            "/api/services/users/history")]
    assert all(SECRET_ARG not in b for b in [*bodies, update])


async def test_host_header_must_be_loopback_without_token(server: DashboardServer) -> None:
    async with client(server) as c:
        r = await c.get("/api/health", headers={"Host": "attacker.example:8686"})
        ok = await c.get("/api/health", headers={"Host": f"localhost:{server.port}"})
    assert r.status_code == 403
    assert "loopback" in r.json()["error"]
    assert ok.status_code == 200


# -- WebSocket ------------------------------------------------------------------------------


async def test_websocket_hello_then_push_every_second(mesh: ml.Mesh,
                                                      server: DashboardServer) -> None:
    async with connect(ws_url(server), proxy=None) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        assert hello["balancers"] == {"users": "p2c_ewma", "orders": "p2c_ewma"}
        # the real sampler pushes once a second: the hello holds the last frame pushed
        # (the whole mesh), or nothing before the first; then a whole tick comes first
        whole = "services" in hello
        seen, users, rows = 0, {}, {}
        if whole:  # its second is over before the traffic starts
            assert list(hello["services"]) == ["users", "orders"]
            users = dict(hello["services"]["users"])
            rows = {row[0]: row for row in users.pop("backends")}
        await drive(mesh)
        # the first push may predate the traffic
        for i in range(3):
            tick = json.loads(await asyncio.wait_for(ws.recv(), 2.5))
            assert tick["type"] == ("delta" if whole or i else "tick")
            users.update(tick["services"].get("users", {}))
            rows.update({row[0]: row for row in users.pop("backends", [])})
            seen += users["requests"]
            assert SECRET_ARG not in json.dumps(tick)
            if seen == 20:
                break
        assert seen == 20
        assert sorted(rows) == ["http://127.0.0.1:80", "http://127.0.0.2:80"]
        assert [row[1] for row in rows.values()] == ["up", "up"]
        assert sum(row[4] for row in rows.values()) == 20


async def test_websocket_client_cap() -> None:
    srv = await make_mesh().serve_dashboard(port=0, max_clients=1)
    try:
        async with connect(ws_url(srv), proxy=None) as first:
            await first.recv()
            async with connect(ws_url(srv), proxy=None) as second:
                with pytest.raises(ConnectionClosed) as info:
                    await second.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
            assert json.loads(await asyncio.wait_for(first.recv(), 2.5))["type"] in (
                "tick", "delta")  # served on: a frame a second
    finally:
        await srv.stop()


async def test_websocket_from_another_origin_is_refused(server: DashboardServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(server), origin="http://attacker.example",  # type: ignore[arg-type]
                           proxy=None):
            pass
    assert info.value.response.status_code == 403


# -- token auth -------------------------------------------------------------------------------


@pytest.fixture
async def secured(mesh: ml.Mesh) -> AsyncIterator[DashboardServer]:
    srv = await mesh.serve_dashboard(port=0, token=TOKEN)
    yield srv
    await srv.stop()


async def test_token_required_on_data_routes(secured: DashboardServer) -> None:
    async with client(secured) as c:
        for path in ("/api/health", "/api/services", "/api/services/users",
                     "/api/services/users/history", "/api/alerts", "/metrics"):
            none = await c.get(path)
            wrong = await c.get(path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
            basic = await c.get(path, headers={"Authorization": "Basic " + TOKEN})
            query = await c.get(path, params={"token": TOKEN})  # only the WebSocket takes it
            right = await c.get(path, headers={"Authorization": "Bearer " + TOKEN})
            for r in (none, wrong, basic, query):
                assert r.status_code == 401, path
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert TOKEN not in r.text
            assert right.status_code == 200
            assert TOKEN not in right.text


async def test_page_shell_is_public_and_holds_no_token(secured: DashboardServer) -> None:
    async with client(secured) as c:
        page = await c.get("/")
        style = await c.get("/static/style.css")
    assert page.status_code == 200
    assert style.status_code == 200
    assert TOKEN not in page.text


async def test_websocket_token(secured: DashboardServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(secured), proxy=None):
            pass
    assert info.value.response.status_code == 401
    for query in ("?token=wrong", "?token=" + TOKEN):  # a URL never carries credentials
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(secured, query), proxy=None):
                pass
        assert info.value.response.status_code == 401
    headers = {"Authorization": "Bearer " + TOKEN}
    async with connect(ws_url(secured), additional_headers=headers, proxy=None) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"


async def test_token_allows_any_host_header(secured: DashboardServer) -> None:
    async with client(secured, headers={"Authorization": "Bearer " + TOKEN}) as c:
        r = await c.get("/api/health", headers={"Host": "dashboard.internal:443"})
    assert r.status_code == 200


# -- the foreground runner (meshlite dashboard CONFIG) ---------------------------------------

_RUNNER = """
import sys
import meshlite as ml
from meshlite.observability._dashboard import run_dashboard

def from_config(path, **kwargs):  # the config loader is tested elsewhere
    assert path == "mesh.yaml"
    return ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"])])

ml.Mesh.from_config = from_config
sys.exit(run_dashboard("mesh.yaml", "127.0.0.1", 0, None))
"""


def test_run_dashboard_serves_until_interrupted() -> None:
    with subprocess.Popen([sys.executable, "-c", _RUNNER], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.startswith("meshlite dashboard on http://127.0.0.1:"), line
            url = line.split()[3]
            with httpx.Client(trust_env=False, verify=_TLS) as c:
                health = c.get(url + "/api/health").json()
            assert health["services"]["users"]["status"] == "healthy"
            child.send_signal(signal.SIGINT)
            _, errors = child.communicate(timeout=10)
            assert child.returncode == 0, errors
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
