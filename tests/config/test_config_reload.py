"""Hot reload with a real file watcher: valid changes are applied atomically and keep the
state of unchanged policies; a bad file changes nothing and is recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import ConfigReloaded, ConfigReloadFailed, watch
from meshlite.discovery import Discovery
from meshlite.routing import BackendsChanged, Service

WAIT = 10.0  # seconds: a bound, not an expectation (a reload takes tens of ms)

BASE = """
services:
  users:
    backends: ["http://u1:1", "http://u2:1"]
    retry: {{attempts: {attempts}}}
    circuit_breaker: {{failure_rate: 0.5, window: 10, min_calls: 5, open_seconds: 60}}
    rate_limit: {{rate: 2, per: 60, mode: reject}}
{extra}
hot_reload: true
"""


def config(attempts: int = 3, extra: str = "") -> str:
    return BASE.format(attempts=attempts, extra=extra)


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def policy(mesh: ml.Mesh, name: str, kind: str) -> Any:
    return next(p for p in mesh.service(name).pipeline.walk() if p.kind == kind)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "mesh.yaml"
    write(p, config())
    return p


async def test_change_keeps_unchanged_policy_state(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ={})
    events: list[Any] = []
    mesh.add_hook(events.append)
    async with mesh:
        breaker = policy(mesh, "users", "circuit_breaker")
        limit = policy(mesh, "users", "rate_limit")
        old_retry = policy(mesh, "users", "retry")
        await mesh.call("users", lambda b: b.address)  # spends one of the two tokens
        breaker.force_open()
        write(path, config(attempts=5))
        await until(lambda: mesh.config_version == 1, "the reload")
        assert policy(mesh, "users", "retry") is not old_retry
        assert policy(mesh, "users", "retry").options.attempts == 5
        assert policy(mesh, "users", "circuit_breaker") is breaker
        assert breaker.state == "forced_open"
        assert policy(mesh, "users", "rate_limit") is limit
        with pytest.raises(ml.CircuitOpenError):
            await mesh.call("users", lambda b: b.address)
        breaker.reset()
        await mesh.call("users", lambda b: b.address)  # the second and last token
        with pytest.raises(ml.RateLimitedError):  # the tokens spent before the reload count
            await mesh.call("users", lambda b: b.address)
    [reloaded] = [e for e in events if isinstance(e, ConfigReloaded)]
    assert (reloaded.version, reloaded.changed, reloaded.added) == (1, ("users",), ())


async def test_bad_file_keeps_the_old_config(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ={"TOKEN": "hunter22"})
    events: list[Any] = []
    mesh.add_hook(events.append)
    async with mesh:
        retry = policy(mesh, "users", "retry")
        bad = config(attempts=0, extra='  orders: {backends: ["http://${TOKEN}:1"], '
                                       'balancer: nope}')
        write(path, bad)
        await until(lambda: bool(mesh.reload_errors), "the rejection")
        [error] = mesh.reload_errors
        assert isinstance(error, ml.ConfigError)
        assert "services.users.retry.attempts: must be >= 1, got 0" in error.errors
        assert any(e.startswith("services.orders.balancer:") for e in error.errors)
        assert "hunter22" not in str(error)
        assert mesh.config_version == 0
        assert policy(mesh, "users", "retry") is retry
        assert [s.name for s in mesh.services] == ["users"]
        [failed] = [e for e in events if isinstance(e, ConfigReloadFailed)]
        assert failed.errors == error.errors
        assert failed.path == str(path)
        write(path, config(attempts=4))  # fixed: applied
        await until(lambda: mesh.config_version == 1, "the fixed reload")
        assert policy(mesh, "users", "retry").options.attempts == 4


async def test_backends_change_in_place(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ={})
    events: list[Any] = []
    mesh.add_hook(events.append)
    async with mesh:
        service = mesh.service("users")
        kept = service.endpoints[1]
        write(path, config().replace('"http://u1:1", "http://u2:1"',
                                     '"http://u2:1", "http://u3:1"'))
        await until(lambda: mesh.config_version == 1, "the reload")
        assert mesh.service("users") is service
        assert [b.address for b in service.backends] == ["http://u2:1", "http://u3:1"]
        assert service.endpoints[0] is kept  # an unchanged backend keeps its state
    [changed] = [e for e in events if isinstance(e, BackendsChanged)]
    assert (changed.added, changed.removed) == (("http://u3:1",), ("http://u1:1",))


async def test_services_added_replaced_and_removed(path: Path) -> None:
    write(path, config(extra="  payments: {backends: [p], discovery: static}"))
    mesh = ml.Mesh.from_config(str(path), environ={})
    async with mesh:
        users, payments = mesh.service("users"), mesh.service("payments")
        [driver] = [c for c in payments.components if isinstance(c, Discovery)]
        assert driver._task is not None
        breaker = policy(mesh, "users", "circuit_breaker")
        new = config(extra="  orders: {backends: [o]}").replace(
            "    retry:", "    balancer: round_robin\n    retry:")
        write(path, new)
        await until(lambda: mesh.config_version == 1, "the reload")
        assert [s.name for s in mesh.services] == ["users", "orders"]
        assert mesh.service("users") is not users  # routing changed: a new service...
        assert mesh.service("users").balancer.name == "round_robin"
        assert policy(mesh, "users", "circuit_breaker") is breaker  # ...same breaker
        with pytest.raises(ml.ConfigError, match="no service named 'payments'"):
            mesh.service("payments")
        await until(lambda: driver._task is None, "the removed service to drain")
        assert await mesh.call("orders", lambda b: b.address) == "o"


def test_hot_reload_on_a_sync_mesh(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ={})
    with mesh:
        write(path, config(attempts=7))
        deadline = time.monotonic() + WAIT
        while mesh.config_version == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mesh.config_version == 1
        assert policy(mesh, "users", "retry").options.attempts == 7
        assert mesh.call_sync("users", lambda b: b.address) in ("http://u1:1", "http://u2:1")


async def test_watch_a_mesh_built_in_code(tmp_path: Path) -> None:
    path = tmp_path / "extra.toml"
    write(path, '[services.orders]\nbackends = ["http://o:1"]\ndepends_on = ["legacy"]\n')
    legacy = Service("legacy", ["http://l:1"])
    mesh = ml.Mesh([legacy])
    watcher = watch(mesh, str(path), environ={})
    assert [s.name for s in mesh.services] == ["legacy", "orders"]
    async with mesh:
        write(path, '[services.orders]\nbackends = ["http://o:2"]\n')
        await until(lambda: mesh.config_version == 1, "the reload")
        assert [b.address for b in mesh.service("orders").backends] == ["http://o:2"]
        assert mesh.service("legacy") is legacy  # not the file's: left alone
        assert await watcher.reload() is True  # unchanged file: nothing to do
        assert mesh.config_version == 1


async def test_dependency_on_a_removed_service_is_rejected(path: Path) -> None:
    write(path, config(extra="  orders: {backends: [o], depends_on: users}"))
    mesh = ml.Mesh.from_config(str(path), environ={})
    async with mesh:
        write(path, "services:\n  orders: {backends: [o], depends_on: users}\n")
        await until(lambda: bool(mesh.reload_errors), "the rejection")
        assert mesh.reload_errors[0].errors == (
            "services.orders.depends_on[0]: 'users' is not a service (services: orders)",)
        assert [s.name for s in mesh.services] == ["users", "orders"]


async def test_alert_rules_are_replaced(path: Path) -> None:
    rules = "alerts: [{{name: {name}, condition: error_rate, threshold: 0.1}}]\n"
    write(path, config() + rules.format(name="first"))
    mesh = ml.Mesh.from_config(str(path), environ={})
    assert [r.name for r in mesh.alerts.rules] == ["first"]
    async with mesh:
        write(path, config() + rules.format(name="second"))
        await until(lambda: mesh.config_version == 1, "the reload")
        assert [r.name for r in mesh.alerts.rules] == ["second"]


async def test_watch_a_mesh_built_from_config_without_hot_reload(path: Path,
                                                                 tmp_path: Path) -> None:
    write(path, config().replace("hot_reload: true", "hot_reload: false"))
    mesh = ml.Mesh.from_config(str(path), environ={})
    watcher = watch(mesh, str(path))
    assert watch(mesh, str(path)) is watcher
    with pytest.raises(ml.ConfigError, match="already follows"):
        watch(mesh, str(tmp_path / "other.yaml"))
    async with mesh:
        write(path, config(attempts=6).replace("hot_reload: true", "hot_reload: false"))
        await until(lambda: mesh.config_version == 1, "the reload")
        assert policy(mesh, "users", "retry").options.attempts == 6
