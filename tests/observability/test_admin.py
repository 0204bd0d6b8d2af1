"""The dashboard's admin API over a real loopback socket: breakers, backends, reload;
the token it requires; the audit record of every action; secrets never shown."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from _system import free_port

import meshlite as ml
from meshlite._audit import AuditLog
from meshlite.observability._dashboard._server import DashboardServer

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "tok-Zq81-very-secret-value"
ENV = {"API_TOKEN": SECRET}
_TLS = ssl.create_default_context()  # unused on http://, but httpx builds one per client

CONFIG = """
services:
  users:
    backends: ["http://127.0.0.1:80", "http://127.0.0.2:80"]
    headers: {{Authorization: "Bearer ${{API_TOKEN}}"}}
    retry: {{attempts: {attempts}}}
    circuit_breaker: {{failure_rate: 0.5, window: 10, min_calls: 5}}
audit: audit.jsonl
"""


def make_mesh() -> ml.Mesh:
    return ml.Mesh([
        ml.Service("users", ["http://127.0.0.1:80", "http://127.0.0.2:80"],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name="users-db"),
                                        ml.CircuitBreaker(name="users-cache"))),
        ml.Service("twins", ["http://127.0.0.3:80"],
                   pipeline=ml.Pipeline(ml.CircuitBreaker(name="same"),
                                        ml.CircuitBreaker(name="same"))),
    ])


@pytest.fixture
def mesh(tmp_path: Path) -> ml.Mesh:
    m = make_mesh()
    m.audit = AuditLog(tmp_path / "audit.jsonl")
    return m


@pytest.fixture
async def server(mesh: ml.Mesh) -> AsyncIterator[DashboardServer]:
    srv = await mesh.serve_dashboard(port=0, admin_token=TOKEN)
    yield srv
    await srv.stop()


def client(srv: DashboardServer, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.url, trust_env=False, verify=_TLS,
                             headers=AUTH if headers is None else headers)


def backend_url(service: str, address: str, action: str) -> str:
    return f"/api/admin/services/{service}/backends/{quote(address, safe='')}/{action}"


def audit(mesh: ml.Mesh) -> list[dict[str, Any]]:
    assert mesh.audit is not None
    return mesh.audit.read()


# -- access ---------------------------------------------------------------------


async def test_without_a_token_admin_routes_are_forbidden_even_on_loopback(
        mesh: ml.Mesh) -> None:
    srv = await mesh.serve_dashboard(port=0)
    try:
        async with client(srv, headers={}) as c:
            r = await c.post("/api/admin/services/users/breakers/users-db/force_open")
            assert r.status_code == 403
            assert "start it with one" in r.json()["error"]
            assert (await c.post("/api/admin/reload")).status_code == 403
            assert (await c.get("/api/services")).status_code == 200  # the rest still works
    finally:
        await srv.stop()
    assert {b.name: b.state for b in _breakers(mesh, "users")}["users-db"] == "closed"
    assert audit(mesh) == []


def _breakers(mesh: ml.Mesh, service: str) -> list[Any]:
    return [p for p in mesh.service(service).pipeline.walk()
            if isinstance(p, ml.CircuitBreaker)]


async def test_missing_or_wrong_token_is_401(server: DashboardServer, mesh: ml.Mesh) -> None:
    for headers in ({}, {"Authorization": "Bearer " + "x" * len(TOKEN)}):
        async with client(server, headers=headers) as c:
            r = await c.post("/api/admin/services/users/breakers/users-db/force_open")
            assert r.status_code == 401
    assert _breakers(mesh, "users")[0].state == "closed"


async def test_get_is_405(server: DashboardServer) -> None:
    async with client(server) as c:
        r = await c.get("/api/admin/reload")
    assert r.status_code == 405
    assert "error" in r.json()


# -- breakers -------------------------------------------------------------------


async def test_force_open_reset_disable_by_name_and_position(
        server: DashboardServer, mesh: ml.Mesh) -> None:
    db, cache = _breakers(mesh, "users")
    async with client(server) as c:
        r = await c.post("/api/admin/services/users/breakers/users-db/force_open")
        assert r.status_code == 200
        assert r.json() == {"service": "users", "breaker": "users-db", "position": 1,
                            "action": "force_open", "state": "forced_open"}
        assert db.state == "forced_open"
        r = await c.post("/api/admin/services/users/breakers/2/disable")
        assert (r.json()["breaker"], r.json()["state"]) == ("users-cache", "disabled")
        assert cache.state == "disabled"
        r = await c.post("/api/admin/services/users/breakers/users-db/reset")
        assert r.json()["state"] == "closed"
        snap = (await c.get("/api/services/users")).json()
        assert snap["breakers"] == {"users-db": "closed", "users-cache": "disabled"}
    records = audit(mesh)
    assert [(r["action"], r["target"], r["result"]) for r in records] == [
        ("breaker.force_open", "users/breakers/users-db", "ok"),
        ("breaker.disable", "users/breakers/2", "ok"),
        ("breaker.reset", "users/breakers/users-db", "ok")]
    assert {r["actor"] for r in records} == {"admin:127.0.0.1"}


@pytest.mark.parametrize("on_error", ["local", "raise"])
async def test_a_shared_breaker_whose_store_is_down_is_503(on_error: str,
                                                           tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from meshlite.state import RedisStore

    port = free_port()  # a port nothing listens on: a Redis that is down
    store = RedisStore(f"redis://127.0.0.1:{port}/0", on_error=on_error)
    breaker = ml.CircuitBreaker(name="users-db", store=store)
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"],
                               pipeline=ml.Pipeline(breaker))])
    mesh.audit = AuditLog(tmp_path / "audit.jsonl")
    srv = await mesh.serve_dashboard(port=0, admin_token=TOKEN)
    try:
        async with client(srv) as c:
            r = await c.post("/api/admin/services/users/breakers/users-db/force_open")
    finally:
        await srv.stop()
        store.close()
    assert r.status_code == 503  # not "applied": the other processes never saw it
    assert f"127.0.0.1:{port}" in r.json()["error"]
    assert [(a["action"], a["result"]) for a in audit(mesh)] == [
        ("breaker.force_open", "error")]


async def test_unknown_names_are_404_naming_what_exists(
        server: DashboardServer, mesh: ml.Mesh) -> None:
    async with client(server) as c:
        r = await c.post("/api/admin/services/ghost/breakers/x/reset")
        assert r.status_code == 404
        assert r.json()["error"] == "no service named 'ghost' (services: twins, users)"
        r = await c.post("/api/admin/services/users/breakers/nope/reset")
        assert r.status_code == 404
        assert "1: 'users-db', 2: 'users-cache'" in r.json()["error"]
        r = await c.post("/api/admin/services/users/breakers/users-db/explode")
        assert r.status_code == 404
        assert "force_open, reset, disable" in r.json()["error"]
        r = await c.post(backend_url("users", "http://127.9.9.9:80", "eject"))
        assert r.status_code == 404
        assert "http://127.0.0.1:80, http://127.0.0.2:80" in r.json()["error"]
        r = await c.post(backend_url("users", "http://127.0.0.1:80", "explode"))
        assert r.status_code == 404
        assert "eject, restore" in r.json()["error"]
    records = audit(mesh)
    assert len(records) == 5
    assert all(r["result"] == "error" and r["error"] for r in records)
    assert records[0]["details"] == {"status": 404}


async def test_two_breakers_with_one_name_are_409_and_reachable_by_position(
        server: DashboardServer, mesh: ml.Mesh) -> None:
    async with client(server) as c:
        r = await c.post("/api/admin/services/twins/breakers/same/force_open")
        assert r.status_code == 409
        assert "by its position, 1 to 2" in r.json()["error"]
        r = await c.post("/api/admin/services/twins/breakers/2/force_open")
        assert r.status_code == 200
    first, second = _breakers(mesh, "twins")
    assert (first.state, second.state) == ("closed", "forced_open")


# -- backends -------------------------------------------------------------------


async def test_eject_until_restored_then_restore(server: DashboardServer,
                                                 mesh: ml.Mesh) -> None:
    address = "http://127.0.0.1:80"
    async with client(server) as c:
        r = await c.post(backend_url("users", address, "eject"))
        assert r.status_code == 200
        assert r.json() == {"service": "users", "backend": address, "action": "eject",
                            "seconds": None, "status": "ejected",
                            "reason": "ejected by hand until restored"}
        got = {await mesh.call("users", lambda b: b.address) for _ in range(6)}
        assert got == {"http://127.0.0.2:80"}
        raw = (await c.get("/api/services")).text
        json.loads(raw, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
        health = (await c.get("/api/health")).json()["services"]["users"]
        assert health["status"] == "degraded"
        r = await c.post(backend_url("users", address, "restore"))
        assert r.json()["was_ejected"] is True
        assert r.json()["status"] == "up"
        r = await c.post(backend_url("users", address, "restore"))
        assert r.json()["was_ejected"] is False
    records = audit(mesh)
    assert [(r["action"], r["target"]) for r in records] == [
        ("backend.eject", f"users/backends/{address}"),
        ("backend.restore", f"users/backends/{address}"),
        ("backend.restore", f"users/backends/{address}")]


async def test_timed_eject_and_bad_seconds(server: DashboardServer, mesh: ml.Mesh) -> None:
    address = "http://127.0.0.2:80"
    async with client(server) as c:
        r = await c.post(backend_url("users", address, "eject") + "?seconds=30")
        assert (r.status_code, r.json()["seconds"]) == (200, 30.0)
        assert r.json()["reason"].startswith("ejected by hand for 30 s")
        for bad in ("0", "-1", "inf", "nan", "soon"):
            r = await c.post(backend_url("users", address, "eject") + f"?seconds={bad}")
            assert r.status_code == 400
            assert "seconds must be a number > 0" in r.json()["error"]
    assert [r["result"] for r in audit(mesh)] == ["ok"] + ["error"] * 5


# -- reload and secrets -----------------------------------------------------------


async def test_reload_without_a_config_file_is_409(server: DashboardServer,
                                                   mesh: ml.Mesh) -> None:
    async with client(server) as c:
        r = await c.post("/api/admin/reload")
    assert r.status_code == 409
    assert "follows no config file" in r.json()["error"]
    (record,) = audit(mesh)
    assert (record["action"], record["result"]) == ("config.reload", "error")


async def test_reload_applies_rejects_and_never_shows_a_secret(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFIG.format(attempts=2), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    answers: list[str] = []
    caplog.set_level(logging.DEBUG)
    async with mesh:
        srv = await mesh.serve_dashboard(port=0, admin_token=TOKEN)
        try:
            async with client(srv) as c:
                path.write_text(CONFIG.format(attempts=3), encoding="utf-8")
                r = await c.post("/api/admin/reload")
                assert (r.status_code, r.json()["result"], r.json()["version"]) == (
                    200, "applied", 1)
                r = await c.post("/api/admin/reload")
                assert (r.status_code, r.json()["result"]) == (200, "unchanged")
                bad = CONFIG.format(attempts=3).replace(
                    "    retry:", '    timeout: "${API_TOKEN}"\n    retry:')
                path.write_text(bad, encoding="utf-8")
                r = await c.post("/api/admin/reload")
                assert r.status_code == 422
                body = r.json()
                assert body["result"] == "rejected"
                assert any(e.startswith("services.users.timeout") for e in body["errors"])
                assert "got '***'" in body["error"]
                answers.append(r.text)
                r = await c.post("/api/admin/services/users/breakers/users/force_open")
                assert r.json()["state"] == "forced_open"  # named after its service
                answers.append(r.text)
                r = await c.post(backend_url("users", "http://nowhere:1", "eject"))
                answers.append(r.text)
                for route in ("/api/services", "/api/services/users", "/api/health",
                              "/api/alerts", "/metrics"):
                    answers.append((await c.get(route)).text)
        finally:
            await srv.stop()
    assert mesh.config_version == 1
    records = [json.loads(line) for line in
               (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["action"], r["result"], r["actor"]) for r in records] == [
        ("config.load", "applied", "api"),
        ("config.reload", "applied", "admin:127.0.0.1"),
        ("config.reload", "ok", "admin:127.0.0.1"),
        ("config.reload", "rejected", "admin:127.0.0.1"),
        ("breaker.force_open", "ok", "admin:127.0.0.1"),
        ("backend.eject", "error", "admin:127.0.0.1")]
    assert records[3]["new_sha256"] != records[3]["old_sha256"] == records[1]["new_sha256"]
    assert "services.users.timeout" in caplog.text
    everything = "\n".join([*answers, caplog.text,
                            (tmp_path / "audit.jsonl").read_text(encoding="utf-8")])
    assert SECRET not in everything
