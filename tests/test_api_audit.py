"""Changes made by code through a mesh's services (breaker controls, manual
ejection) are audited like the admin API's, with the actor ``"api"``; the admin
API's own changes are recorded once, with its actor."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

import meshlite as ml

A, B = "http://127.0.0.1:81", "http://127.0.0.2:81"
ADMIN = "admin-token-for-tests-0123456789xyz"


def make_mesh() -> tuple[ml.Mesh, ml.CircuitBreaker]:
    breaker = ml.CircuitBreaker(name="users-db")
    return ml.Mesh([ml.Service("users", [A, B], pipeline=ml.Pipeline(breaker))]), breaker


def actions(log: ml.AuditLog) -> list[tuple[str, str, str, str]]:
    return [(r["actor"], r["action"], r["target"], r["result"]) for r in log.read()]


def test_breaker_controls_and_manual_ejection_are_audited_as_api(tmp_path: Path) -> None:
    mesh, breaker = make_mesh()
    log = mesh.audit = ml.AuditLog(tmp_path / "audit.jsonl")
    users = mesh.service("users")
    breaker.force_open()
    breaker.reset()
    breaker.disable()
    breaker.reset()
    breaker.reset()  # already closed: nothing changed, nothing recorded
    users.eject(A)
    users.eject(B, 30.0)
    users.restore(A)
    assert actions(log) == [
        ("api", "breaker.force_open", "users/breakers/users-db", "ok"),
        ("api", "breaker.reset", "users/breakers/users-db", "ok"),
        ("api", "breaker.disable", "users/breakers/users-db", "ok"),
        ("api", "breaker.reset", "users/breakers/users-db", "ok"),
        ("api", "backend.eject", f"users/backends/{A}", "ok"),
        ("api", "backend.eject", f"users/backends/{B}", "ok"),
        ("api", "backend.restore", f"users/backends/{A}", "ok"),
    ]
    records = log.read()
    assert records[0]["details"] == {"previous": "closed", "state": "forced_open"}
    assert records[4]["details"] == {"seconds": None}  # until restored
    assert records[5]["details"] == {"seconds": 30.0}


def test_services_added_later_are_audited_and_none_stops_it(tmp_path: Path) -> None:
    mesh, _ = make_mesh()
    log = mesh.audit = ml.AuditLog(tmp_path / "audit.jsonl")
    later = ml.CircuitBreaker(name="orders-db")
    mesh.register(ml.Service("orders", [A], pipeline=ml.Pipeline(later)))
    later.force_open()
    mesh.audit = None
    later.reset()
    mesh.service("users").eject(A)
    assert actions(log) == [("api", "breaker.force_open", "orders/breakers/orders-db", "ok")]


def test_nothing_is_recorded_without_an_audit_log() -> None:
    mesh, breaker = make_mesh()
    breaker.force_open()  # no log: nothing to write, nothing fails
    assert mesh.audit is None
    assert breaker.state == "forced_open"


async def test_admin_api_changes_are_recorded_once_with_the_admin_actor(
        tmp_path: Path) -> None:
    mesh, breaker = make_mesh()
    log = mesh.audit = ml.AuditLog(tmp_path / "audit.jsonl")
    srv = await mesh.serve_dashboard(port=0, admin_token=ADMIN)
    try:
        async with httpx.AsyncClient(base_url=srv.url, trust_env=False,
                                     verify=ssl.create_default_context(),
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            base = "/api/admin/services/users"
            r: Any = await c.post(f"{base}/breakers/users-db/force_open")
            assert r.status_code == 200
            r = await c.post(f"{base}/backends/{quote(A, safe='')}/eject")
            assert r.status_code == 200
    finally:
        await srv.stop()
    breaker.reset()  # code again: "api"
    assert actions(log) == [
        ("admin:127.0.0.1", "breaker.force_open", "users/breakers/users-db", "ok"),
        ("admin:127.0.0.1", "backend.eject", f"users/backends/{A}", "ok"),
        ("api", "breaker.reset", "users/breakers/users-db", "ok"),
    ]
