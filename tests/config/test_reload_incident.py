"""Config reloads as an operator meets them during an incident: a circuit breaker
forced open (or disabled) and a backend ejected through the dashboard's admin API,
then the config file edited under load. What was set by hand stays so across the
reload, whatever part of the service the edit rebuilt, and the reload's audit record
says what it kept. Real parts throughout: the backends are ``FakeBackend`` servers,
the admin API is the dashboard served on a loopback port, the edit is a save the
hot-reload watcher picks up."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _system import free_port

import meshlite as ml
from meshlite.testing import FakeBackend

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

ADMIN = "incident-admin-token-0123456789"


def config(port: int, a: str, b: str, *, balancer: str = "round_robin",
           failure_rate: float = 0.5, attempts: int = 1) -> str:
    return f"""\
services:
  users:
    backends: ["{a}", "{b}"]
    balancer: {balancer}
    retry: {{attempts: {attempts}}}
    circuit_breaker: {{failure_rate: {failure_rate}, window: 20, min_calls: 10}}
dashboard: {{port: {port}, admin_token: "{ADMIN}"}}
hot_reload: {{enabled: true, step_ms: 20}}
audit: audit.jsonl
"""


WAIT = 30.0  # seconds a condition may take before the test fails saying which


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait for ``check()``; fail naming ``what`` if it never holds."""
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Operator:
    """The admin API of the dashboard on ``port``, as an operator's ``curl`` uses it."""

    def __init__(self, client: httpx.AsyncClient, port: int) -> None:
        self.client, self.base = client, f"http://127.0.0.1:{port}/api/admin/services/users"

    async def post(self, route: str) -> dict[str, Any]:
        r = await self.client.post(self.base + route,
                                   headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def eject(self, address: str, seconds: float | None = None) -> dict[str, Any]:
        query = "" if seconds is None else f"?seconds={seconds:g}"
        return await self.post(f"/backends/{urllib.parse.quote(address, safe='')}/eject"
                               + query)


async def served(mesh: ml.Mesh, port: int) -> None:
    """Wait until the mesh's dashboard answers on ``port``."""
    async with httpx.AsyncClient(trust_env=False) as client:
        while True:
            try:
                await client.get(f"http://127.0.0.1:{port}/api/health")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.02)


async def save(mesh: ml.Mesh, path: Path, text: str) -> None:
    """Save ``text`` by renaming over ``path``, and wait for the watcher to apply it."""
    version = mesh.config_version
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    await until(lambda: mesh.config_version > version, "the save applied")


async def load(mesh: ml.Mesh, calls: int) -> dict[str, int]:
    """``calls`` calls to users, each answer counted by its outcome."""
    counts: dict[str, int] = {}
    async with mesh.http("users") as users:
        async def one() -> None:
            try:
                outcome = str((await users.get("/work")).status_code)
            except ml.CircuitOpenError:
                outcome = "circuit_open"
            counts[outcome] = counts.get(outcome, 0) + 1

        await asyncio.gather(*(one() for _ in range(calls)))
    return counts


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


Scenario = Callable[[ml.Mesh, Operator, FakeBackend, FakeBackend, Path, int],
                    Awaitable[None]]


async def incident(tmp_path: Path, scenario: Scenario) -> list[dict[str, Any]]:
    port = free_port()
    async with FakeBackend() as a, FakeBackend() as b:
        path = tmp_path / "mesh.yaml"
        path.write_text(config(port, a.url, b.url))
        mesh = ml.Mesh.from_config(str(path))
        async with mesh, httpx.AsyncClient(trust_env=False) as client:
            await served(mesh, port)
            await scenario(mesh, Operator(client, port), a, b, path, port)
    return [r for r in records(tmp_path / "audit.jsonl") if r["action"] == "config.reload"]


@pytest.mark.parametrize(("action", "state"), [("force_open", "forced_open"),
                                               ("disable", "disabled")])
async def test_a_breaker_set_by_hand_stays_so_when_its_thresholds_change(
        tmp_path: Path, action: str, state: str, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(mesh: ml.Mesh, operator: Operator, a: FakeBackend, b: FakeBackend,
                       path: Path, port: int) -> None:
        assert (await operator.post(f"/breakers/users/{action}"))["state"] == state
        caplog.clear()
        caplog.set_level(logging.INFO, logger="meshlite")
        await save(mesh, path, config(port, a.url, b.url, failure_rate=0.9))
        # The reload says what it kept, and the new breaker's own change is not
        # logged as news ("is now forced_open (was closed)": it was not).
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("meshlite")]
        assert any("kept users/breakers/users" in line for line in lines), lines
        assert not [line for line in lines if "(was closed)" in line], lines
        breaker, = [p for p in mesh.service("users").pipeline.walk()
                    if isinstance(p, ml.CircuitBreaker)]
        assert breaker.state == state
        before = a.request_count + b.request_count
        counts = await load(mesh, 40)
        if state == "forced_open":  # every call still refused, none reaches a backend
            assert counts == {"circuit_open": 40}
            assert a.request_count + b.request_count == before
        else:
            assert counts == {"200": 40}
        # Reset by the operator: the new breaker closes.
        assert (await operator.post("/breakers/users/reset"))["state"] == "closed"

    reloads = await incident(tmp_path, scenario)
    assert [r["details"].get("kept") for r in reloads] == [[f"users/breakers/users: {state}"]]


@pytest.mark.parametrize("seconds", [None, 600])
async def test_a_backend_ejected_by_hand_stays_out_when_its_service_is_rebuilt(
        tmp_path: Path, seconds: float | None) -> None:
    ejected: list[str] = []

    async def scenario(mesh: ml.Mesh, operator: Operator, a: FakeBackend, b: FakeBackend,
                       path: Path, port: int) -> None:
        await operator.eject(a.url, seconds)
        ejected.append(a.url)
        old = mesh.service("users")
        # A routing change (the balancer) rebuilds the service; the pipeline changes too.
        await save(mesh, path, config(port, a.url, b.url, balancer="random", attempts=2))
        assert mesh.service("users") is not old
        snapshot, = [s for s in mesh.snapshot()["users"].backends
                     if s.address == a.url]
        assert snapshot.status == "ejected"
        if seconds is not None:  # what is left of it, not a new ejection
            assert 0 < snapshot.ejected_for <= seconds
        served_by_a = a.request_count
        assert await load(mesh, 40) == {"200": 40}
        assert a.request_count == served_by_a  # every call went to b
        await operator.post(f"/backends/{urllib.parse.quote(a.url, safe='')}/restore")
        await until(lambda: mesh.snapshot()["users"].backends[0].status == "up",
                    "a back in rotation")

    reloads = await incident(tmp_path, scenario)
    assert [r["details"].get("kept") for r in reloads] == [
        [f"users/backends/{ejected[0]}: ejected"]]
