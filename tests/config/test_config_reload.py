"""Hot reload with a real file watcher: valid changes are applied atomically and keep the
state of unchanged policies; a bad file changes nothing and is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.config import ConfigReloaded, ConfigReloadFailed, watch
from meshlite.config import _incremental as incremental_module
from meshlite.config._load import managed_of
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


@pytest.mark.parametrize("left", ["", "\n", "# being rewritten\n"])
async def test_an_emptied_file_keeps_every_service(path: Path, left: str) -> None:
    """A file caught empty (truncated by a save that writes in place, before the new
    text is written) is refused: it would remove every service of every worker."""
    mesh = ml.Mesh.from_config(str(path), environ={})
    async with mesh:
        write(path, left)
        await until(lambda: bool(mesh.reload_errors), "the rejection")
        assert "the config file is empty" in str(mesh.reload_errors[-1])
        assert "services: {}" in str(mesh.reload_errors[-1])
        assert [s.name for s in mesh.services] == ["users"]
        assert mesh.config_version == 0
        write(path, config(attempts=4))  # the rest of the save: applied
        await until(lambda: mesh.config_version == 1, "the completed save")
        assert policy(mesh, "users", "retry").options.attempts == 4


async def test_a_reload_of_other_sections_names_them(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reload that changes only sections beside ``services`` says which: its log
    line said that nothing was added, removed or changed."""
    mesh = ml.Mesh.from_config(str(path), environ={})
    events: list[Any] = []
    mesh.add_hook(events.append)
    caplog.set_level(logging.INFO, logger="meshlite.config")
    async with mesh:
        write(path, config() + "inbound: {routes: [{pattern: /x, rate: 5}]}\n"
                               "alerts: [{name: errors, condition: error_rate, threshold: 0.5}]\n")
        await until(lambda: mesh.config_version == 1, "the reload")
    [reloaded] = [e for e in events if isinstance(e, ConfigReloaded)]
    assert (reloaded.added, reloaded.removed, reloaded.changed) == ((), (), ())
    assert reloaded.sections == ("inbound", "alerts")
    [line] = [r for r in caplog.records if getattr(r, "meshlite_event", "") == "ConfigReloaded"]
    assert "sections changed ['inbound', 'alerts']" in line.getMessage()
    assert line.sections == ("inbound", "alerts")


async def test_a_reloaded_drain_timeout_is_the_meshs(path: Path) -> None:
    write(path, config() + "drain_timeout: 5.0\n")
    mesh = ml.Mesh.from_config(str(path), environ={})
    given = ml.Mesh.from_config(str(path), environ={}, hot_reload=False, drain_timeout=9.0)
    assert (mesh.drain_timeout, given.drain_timeout) == (5.0, 9.0)
    events: list[Any] = []
    mesh.add_hook(events.append)
    async with mesh, given:
        write(path, config() + "drain_timeout: 2.0\n")
        assert await mesh.reload() is True
        assert await given.reload() is True
        assert (mesh.drain_timeout, given.drain_timeout) == (2.0, 9.0)  # the code's stays
        write(path, config())  # no drain_timeout: the default
        assert await mesh.reload() is True
        assert mesh.drain_timeout == 30.0
    assert [e.sections for e in events if isinstance(e, ConfigReloaded)] == [
        ("drain_timeout",), ("drain_timeout",)]


async def test_a_kubernetes_configmap_update_is_seen(tmp_path: Path) -> None:
    """A ConfigMap volume mounts ``mesh.yaml -> ..data/mesh.yaml`` and updates it by
    pointing the ``..data`` link at a new directory: ``mesh.yaml`` itself is never
    touched, and the update was never seen."""
    mount = tmp_path / "config"
    (mount / "..2026_01").mkdir(parents=True)
    write(mount / "..2026_01" / "mesh.yaml", config())
    (mount / "..data").symlink_to("..2026_01")
    (mount / "mesh.yaml").symlink_to("..data/mesh.yaml")
    mesh = ml.Mesh.from_config(str(mount / "mesh.yaml"), environ={})
    async with mesh:
        (mount / "..2026_02").mkdir()  # what the kubelet does, in this order
        write(mount / "..2026_02" / "mesh.yaml", config(attempts=5))
        (mount / "..data_tmp").symlink_to("..2026_02")
        (mount / "..data_tmp").rename(mount / "..data")
        (mount / "..2026_01" / "mesh.yaml").unlink()
        (mount / "..2026_01").rmdir()
        await until(lambda: mesh.config_version == 1, "the ConfigMap update")
        assert policy(mesh, "users", "retry").options.attempts == 5


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


# -- all or nothing, off the event loop ------------------------------------------------


def dashboard_config(port: int, attempts: int = 3) -> str:
    return config(attempts=attempts).replace("hot_reload: true", "") + (
        f"dashboard: {{port: {port}}}\n")


async def test_a_reload_whose_dashboard_cannot_move_changes_nothing(
        tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    path = tmp_path / "mesh.yaml"
    audit = tmp_path / "audit.jsonl"
    write(path, dashboard_config(0) + f"audit: {audit}\n")
    mesh = ml.Mesh.from_config(str(path), environ={})
    events: list[Any] = []
    mesh.add_hook(events.append)
    try:
        async with mesh:
            managed = managed_of(mesh)
            assert managed is not None
            assert managed.dashboard is not None
            server = managed.dashboard.server
            retry = policy(mesh, "users", "retry")
            write(path, dashboard_config(busy, attempts=5) + f"audit: {audit}\n")
            assert await mesh.reload() is False
            # Nothing changed: services, version, and the dashboard still serving.
            assert policy(mesh, "users", "retry") is retry
            assert mesh.config_version == 0
            assert managed.dashboard.server is server
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{server.url}/api/health")).status_code == 200
            [error] = mesh.reload_errors
            assert any(e.startswith("dashboard: cannot be served") for e in error.errors)
            assert [type(e).__name__ for e in events] == ["ConfigReloadFailed"]
            records = [json.loads(line) for line in audit.read_text().splitlines()]
            assert records[-1]["action"] == "config.reload"
            assert records[-1]["result"] == "rejected"
            write(path, dashboard_config(0, attempts=5) + f"audit: {audit}\n")
            assert await mesh.reload() is True  # a port that is free: all of it applies
            assert policy(mesh, "users", "retry").options.attempts == 5
            assert mesh.config_version == 1
            assert managed.dashboard.server is server  # its section is as before
    finally:
        taken.close()


async def test_a_reload_is_parsed_while_calls_go_on(path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    loop = asyncio.get_running_loop()
    served: list[str] = []
    real = incremental_module.parse

    def load_while_serving(*args: Any, **kwargs: Any) -> Any:
        # A call through the mesh completes while the new file is being parsed: the
        # parse runs off the event loop (on it, this would wait forever).
        call = asyncio.run_coroutine_threadsafe(mesh.call("users", lambda b: b.address),
                                                loop)
        served.append(call.result(timeout=WAIT))
        return real(*args, **kwargs)

    monkeypatch.setattr(incremental_module, "parse", load_while_serving)
    async with mesh:
        write(path, config(attempts=4))
        assert await mesh.reload() is True
    assert served in (["http://u1:1"], ["http://u2:1"])
    assert mesh.config_version == 1


async def test_a_dashboard_moves_with_its_config(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    write(path, dashboard_config(0))
    mesh = ml.Mesh.from_config(str(path), environ={})
    async with mesh:
        managed = managed_of(mesh)
        assert managed is not None
        assert managed.dashboard is not None
        old = managed.dashboard.server
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        write(path, dashboard_config(free))
        assert await mesh.reload() is True
        assert mesh.config_version == 1
        new = managed.dashboard.server
        assert new.url == f"http://127.0.0.1:{free}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{new.url}/api/health")).status_code == 200
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{old.url}/api/health")


async def test_a_moved_dashboard_goes_on_sampling(tmp_path: Path) -> None:
    # The new server shares the running monitor (it evaluates the alert rules) and
    # starts before the old one stops: stopping the old one must not stop it.
    path = tmp_path / "mesh.yaml"
    write(path, dashboard_config(0))
    mesh = ml.Mesh.from_config(str(path), environ={})
    async with mesh, httpx.AsyncClient() as client:
        managed = managed_of(mesh)
        assert managed is not None
        assert managed.dashboard is not None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        write(path, dashboard_config(free))
        assert await mesh.reload() is True
        url = managed.dashboard.server.url
        moved = int(time.time())

        async def sampled_since_the_move() -> bool:
            with contextlib.suppress(ml.RateLimitedError):  # 2 a minute: failed calls
                await mesh.call("users", lambda backend: backend.address)
            users = (await client.get(f"{url}/api/services/users")).json()
            last = users["last_second"]
            return last is not None and last["second"] > moved and last["requests"] > 0

        deadline = time.monotonic() + WAIT
        while not await sampled_since_the_move():
            assert time.monotonic() < deadline, "the moved dashboard stopped sampling"
            await asyncio.sleep(0.1)


async def test_an_unexpected_error_while_reading_is_a_recorded_rejection(
        path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in a provider")

    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    monkeypatch.setattr(incremental_module, "parse", broken)
    async with mesh:
        write(path, config(attempts=4))
        assert await mesh.reload() is False  # not a RuntimeError out of mesh.reload()
    [error] = mesh.reload_errors
    assert list(error.errors) == ["cannot be applied: RuntimeError: a bug in a provider"]
    assert mesh.config_version == 0
    assert "reading" in caplog.text  # the traceback is logged for the bug report


async def test_a_rejected_reload_logs_one_line_naming_file_position_and_pid(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A journal gives a continuation line no logger name or pid, and log shippers
    split the record there: the parser's multi-line explanation is folded into one
    line in the log, while the ConfigError keeps it readable over several lines."""
    caplog.set_level(logging.INFO, logger="meshlite")
    mesh = ml.Mesh.from_config(str(path), environ={})
    async with mesh:
        write(path, 'services:\n  users:\n    backends: ["http://u1:1"\n  orders: {\n')
        await until(lambda: bool(mesh.reload_errors), "the rejection")
    error = str(mesh.reload_errors[-1])
    assert "not valid YAML" in error
    assert "\n  at line 3, column" in error
    [record] = [r for r in caplog.records
                if getattr(r, "meshlite_event", "") == "ConfigReloadFailed"]
    line = logging.Formatter("%(name)s[%(process)d]: %(message)s").format(record)
    assert "\n" not in line
    assert "\n" not in record.reason
    assert line.startswith(f"meshlite.config[{os.getpid()}]: config {path} rejected by "
                           f"pid {os.getpid()}, the previous config keeps running: "
                           f"{path}: not valid YAML: ")
    assert "at line 3, column 15 | did not find expected ',' or ']' at line 4" in line
    assert record.reason in line


async def test_a_rebuilt_discovered_service_keeps_its_backends_from_the_start(
        tmp_path: Path) -> None:
    # A reload that rebuilds a file-discovered service (only its balancer changes)
    # registered the new one with the file's static backends (none) until its own
    # discovery first resolved: calls in between had no backend. Under load through
    # both clients, every call of ten such reloads is answered.
    from meshlite.testing import FakeBackend

    def write_balancer(name: str) -> None:
        write(tmp_path / "mesh.yaml", "services:\n  users:\n"
              "    discovery: {type: file, path: backends.json}\n"
              f"    balancer: {name}\nhot_reload: true\n")

    async with FakeBackend() as a, FakeBackend() as b:
        (tmp_path / "backends.json").write_text(json.dumps([a.url, b.url]))
        write_balancer("round_robin")
        mesh = ml.Mesh.from_config(str(tmp_path / "mesh.yaml"), dashboard=False)
        failures: list[str] = []
        answered = 0
        async with mesh, mesh.http("users") as client:
            done = asyncio.Event()

            async def load() -> None:
                nonlocal answered
                while not done.is_set():
                    try:
                        assert (await client.get("/")).status_code == 200
                        await mesh.call("users", lambda backend: backend.address)
                        answered += 1
                    except Exception as error:  # each is a failure to list
                        failures.append(repr(error))
                    await asyncio.sleep(0.001)

            tasks = [asyncio.create_task(load()) for _ in range(4)]
            for i in range(10):
                version = mesh.config_version
                write_balancer("least_requests" if i % 2 == 0 else "round_robin")
                assert await mesh.reload()
                assert mesh.config_version == version + 1  # rebuilt, not unchanged
                await asyncio.sleep(0.05)
            done.set()
            await asyncio.gather(*tasks)
        assert failures == []
        assert answered > 40
