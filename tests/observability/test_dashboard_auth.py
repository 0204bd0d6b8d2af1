"""The dashboard's two tokens and the WebSocket ticket, over a real uvicorn server
on loopback: what each token grants, where tokens may come from, and that no log
record of any logger, at any level, ever carries a token or an Authorization value."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _logs import all_log_records, keep_uvicorn_lines, records_holding
from _ws import connect
from websockets.exceptions import InvalidStatus

import meshlite as ml
from meshlite.observability._dashboard._server import DashboardServer
from meshlite.observability._dashboard._tickets import TICKET_SECONDS, Tickets

READ = "read-token-for-tests-0123456789abc"
ADMIN = "admin-token-for-tests-0123456789xyz"
BREAKER = "/api/admin/services/users/breakers/users-db/force_open"
_TLS = ssl.create_default_context()


def make_mesh() -> ml.Mesh:
    return ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"],
                               pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db")))])


def client(srv: DashboardServer, token: str | None = None) -> httpx.AsyncClient:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=srv.url, trust_env=False, verify=_TLS, headers=headers)


def ws_url(srv: DashboardServer, query: str = "") -> str:
    return srv.url.replace("http://", "ws://") + "/ws" + query


async def ticket(srv: DashboardServer, token: str) -> str:
    async with client(srv, token) as c:
        r = await c.post("/api/ws-ticket")
    assert r.status_code == 200
    body = r.json()
    assert body["protocol"] == "meshlite"
    assert body["expires_in"] == TICKET_SECONDS
    assert token not in r.text
    return str(body["ticket"])


@pytest.fixture
async def both() -> AsyncIterator[DashboardServer]:
    srv = await make_mesh().serve_dashboard(port=0, token=READ, admin_token=ADMIN)
    yield srv
    await srv.stop()


# -- what each token grants --------------------------------------------------------------


async def test_read_token_reads_but_admin_needs_the_admin_token(both: DashboardServer) -> None:
    async with client(both, READ) as c:
        assert (await c.get("/api/services")).status_code == 200
        refused = await c.post(BREAKER)
    assert refused.status_code == 403
    assert "admin token" in refused.json()["error"]
    assert READ not in refused.text
    async with client(both, ADMIN) as c:
        assert (await c.get("/api/services")).status_code == 200  # admin implies read
        assert (await c.get("/metrics")).status_code == 200
        done = await c.post(BREAKER)
    assert done.status_code == 200
    assert done.json()["state"] == "forced_open"
    async with client(both, "x" * len(ADMIN)) as c:
        assert (await c.post(BREAKER)).status_code == 401
        assert (await c.get("/api/services")).status_code == 401


async def test_admin_token_alone_guards_reading_too() -> None:
    srv = await make_mesh().serve_dashboard(port=0, admin_token=ADMIN)
    try:
        async with client(srv) as c:
            assert (await c.get("/api/services")).status_code == 401
        async with client(srv, ADMIN) as c:
            assert (await c.get("/api/services")).status_code == 200
            assert (await c.post(BREAKER)).status_code == 200
    finally:
        await srv.stop()


async def test_read_token_alone_has_no_admin_api() -> None:
    srv = await make_mesh().serve_dashboard(port=0, token=READ)
    try:
        async with client(srv, READ) as c:
            r = await c.post(BREAKER)
        assert r.status_code == 403
        assert "admin_token" in r.json()["error"]
    finally:
        await srv.stop()


async def test_the_same_value_for_both_tokens_is_refused() -> None:
    with pytest.raises(ml.ConfigError, match="token and admin_token are the same") as info:
        await make_mesh().serve_dashboard(port=0, token=READ, admin_token=READ)
    assert READ not in str(info.value)


@pytest.mark.parametrize("field", ["token", "admin_token"])
async def test_a_short_token_is_refused_without_echo(field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"serve_dashboard: {field} must be") as info:
        await make_mesh().serve_dashboard(port=0, **{field: "short-secret"})
    assert "short-secret" not in str(info.value)


async def test_admin_token_alone_is_enough_off_loopback() -> None:
    from meshlite.observability._dashboard._auth import check_bind

    check_bind("0.0.0.0", 0, None, 32, ADMIN)  # no error: the admin token guards it
    with pytest.raises(ml.ConfigError, match="not a loopback address"):
        check_bind("0.0.0.0", 0, None, 32, None)


# -- tokens from the environment and from files ----------------------------------------------


async def test_tokens_from_an_environment_variable_and_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DASHBOARD_TOKEN", READ)
    secret = tmp_path / "admin-token"
    secret.write_text(ADMIN + "\n")
    srv = await make_mesh().serve_dashboard(port=0, token={"env": "TEST_DASHBOARD_TOKEN"},
                                            admin_token={"file": str(secret)})
    try:
        async with client(srv, READ) as c:
            assert (await c.get("/api/services")).status_code == 200
            assert (await c.post(BREAKER)).status_code == 403
        async with client(srv, ADMIN) as c:  # the file's trailing newline is dropped
            assert (await c.post(BREAKER)).status_code == 200
    finally:
        await srv.stop()


async def test_bad_token_sources_name_the_source_never_the_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_DASHBOARD_UNSET", raising=False)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"token": {"env": "TEST_DASHBOARD_UNSET"}}, "TEST_DASHBOARD_UNSET is not set"),
        ({"admin_token": {"file": str(tmp_path / "missing")}}, "cannot read"),
        ({"token": {"vault": "x"}}, "{env: NAME} or {file: PATH}"),
        ({"token": 1234567890123456789}, "got int"),
    ]
    big = tmp_path / "big"
    big.write_text(ADMIN * 200)
    cases.append(({"admin_token": {"file": str(big)}}, "holding the token alone"))
    for kwargs, message in cases:
        with pytest.raises(ml.ConfigError, match="serve_dashboard: ") as info:
            await make_mesh().serve_dashboard(port=0, **kwargs)
        assert message in str(info.value)
        assert ADMIN not in str(info.value)
        assert "1234567890123456789" not in str(info.value)


def test_config_tokens_from_env_and_a_file_relative_to_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin").write_text(ADMIN)
    monkeypatch.setenv("TEST_DASHBOARD_TOKEN", READ)
    path = tmp_path / "mesh.yaml"
    path.write_text("services:\n  users: {backends: ['http://127.0.0.1:80']}\n"
                    "dashboard:\n  port: 0\n  token: {env: TEST_DASHBOARD_TOKEN}\n"
                    "  admin_token: {file: secrets/admin}\n  max_connections: 8\n")
    mesh = ml.Mesh.from_config(str(path), dashboard=False)
    assert mesh.config_version >= 0
    path.write_text(path.read_text().replace("secrets/admin", "secrets/none"))
    with pytest.raises(ml.ConfigError, match=r"dashboard\.admin_token") as info:
        ml.Mesh.from_config(str(path), dashboard=False)
    assert ADMIN not in str(info.value)
    assert READ not in str(info.value)


async def test_config_dashboard_serves_with_file_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "admin").write_text(ADMIN)
    path = tmp_path / "mesh.yaml"
    path.write_text("services:\n  users: {backends: ['http://127.0.0.1:80']}\n"
                    "dashboard: {port: 0, admin_token: {file: admin}}\n")
    monkeypatch.chdir("/")  # the file is found beside the config, not in the cwd
    mesh = ml.Mesh.from_config(str(path))
    async with mesh:
        from meshlite.config._load import managed_of

        managed = managed_of(mesh)
        assert managed is not None
        assert managed.dashboard is not None
        srv = managed.dashboard.server
        async with client(srv) as c:
            assert (await c.get("/api/services")).status_code == 401
        async with client(srv, ADMIN) as c:
            assert (await c.get("/api/services")).status_code == 200


# -- the WebSocket ticket --------------------------------------------------------------------


async def test_websocket_with_a_single_use_ticket(both: DashboardServer) -> None:
    for token in (READ, ADMIN):
        t = await ticket(both, token)
        protocols: Any = ["meshlite", "meshlite.ticket." + t]
        async with connect(ws_url(both), subprotocols=protocols, proxy=None) as ws:
            assert ws.subprotocol == "meshlite"
            assert json.loads(await ws.recv())["type"] == "hello"
        with pytest.raises(InvalidStatus) as info:  # used up
            async with connect(ws_url(both), subprotocols=protocols, proxy=None):
                pass
        assert info.value.response.status_code == 401


async def test_ticket_needs_a_token_and_post(both: DashboardServer) -> None:
    async with client(both) as c:
        assert (await c.post("/api/ws-ticket")).status_code == 401
    async with client(both, READ) as c:
        assert (await c.get("/api/ws-ticket")).status_code == 405
    forged: Any = ["meshlite", "meshlite.ticket.not-a-ticket"]
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(both), subprotocols=forged, proxy=None):
            pass
    assert info.value.response.status_code == 401


def test_tickets_expire_and_are_bounded() -> None:
    now = [0.0]
    tickets = Tickets(clock=lambda: now[0])
    late = tickets.issue("read")
    kept = tickets.issue("admin")
    now[0] = TICKET_SECONDS - 0.001
    assert tickets.redeem("meshlite, meshlite.ticket." + kept) == "admin"
    now[0] = TICKET_SECONDS
    assert tickets.redeem("meshlite.ticket." + late) is None  # expired
    for _ in range(1000):
        tickets.issue("read")
    assert len(tickets) <= 256


# -- nothing in any log ----------------------------------------------------------------------


async def test_no_log_record_holds_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    keep_uvicorn_lines(monkeypatch)
    with all_log_records() as records:
        await _session()
    names = {r.name for r in records}
    assert "uvicorn.error" in names  # the capture works: uvicorn's own records are here
    assert "uvicorn.asgi" not in names  # its TRACE message log is left out
    assert any("WebSocket /ws" in r.getMessage() for r in records)
    secrets = (READ, ADMIN, "Bearer", "authorization: ", "Authorization: ")
    assert records_holding(records, secrets) == []


async def _session() -> None:
    """Every way a client may present a token, right or wrong."""
    srv = await make_mesh().serve_dashboard(port=0, token=READ, admin_token=ADMIN)
    try:
        for token in (READ, ADMIN, "wrong-" + READ):
            async with client(srv, token) as c:
                await c.get("/api/services")
                await c.get("/metrics")
                await c.post(BREAKER)
                await c.get("/api/services", params={"token": token})
            headers = {"Authorization": f"Bearer {token}"}
            try:  # a client that sends the header on the WebSocket (DEBUG logs headers)
                async with connect(ws_url(srv), additional_headers=headers, proxy=None) as ws:
                    await ws.recv()
            except InvalidStatus:
                assert token.startswith("wrong")
            with pytest.raises(InvalidStatus):  # an old link with the token in the URL
                async with connect(ws_url(srv, "?token=" + token), proxy=None):
                    pass
        t = await ticket(srv, READ)
        protocols: Any = ["meshlite", "meshlite.ticket." + t]
        async with connect(ws_url(srv), subprotocols=protocols, proxy=None) as ws:
            await ws.recv()
    finally:
        await srv.stop()
