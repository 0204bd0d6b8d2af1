"""File and static discovery, the driver, and the provider protocol for others."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.discovery import (
    BaseProvider,
    Discovery,
    DiscoveryFailed,
    DiscoveryProvider,
    DiscoveryRecovered,
    FileProvider,
    Resolution,
    StaticProvider,
    provider_kinds,
    register_provider,
)
from meshlite.routing import Backend, BackendsChanged, Service

WAIT = 10.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def addresses(service: Service) -> list[str]:
    return [b.address for b in service.backends]


@pytest.mark.parametrize(("name", "text"), [
    ("backends.json", '["http://a:1", {"url": "http://b:1", "weight": 3, "zone": "z"}]'),
    ("backends.yaml", "- http://a:1\n- {url: 'http://b:1', weight: 3, zone: z}\n"),
    ("backends.yml", "backends:\n  - http://a:1\n  - {address: 'http://b:1', weight: 3, "
                     "zone: z}\n"),
])
async def test_file_formats(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    answer = await FileProvider(path, watch=False).resolve()
    assert answer.backends == (Backend("http://a:1"), Backend("http://b:1", weight=3, zone="z"))
    assert answer.ttl is None


@pytest.mark.parametrize(("text", "message"), [
    ('{"oops": 1}', "must be a list of backends"),
    ('[{"url": "http://a:1", "weight": -1}]', r"backends\[0\]: Backend: weight must be > 0"),
    ('[{"url": "http://a:1", "port": 2}]', r"backends\[0\] must be one of the keys"),
    ("[1, 2", "not valid JSON"),
])
async def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "backends.json"
    path.write_text(text)
    with pytest.raises(ml.ConfigError, match=message):
        await FileProvider(path, watch=False).resolve()


async def test_file_is_watched_and_failures_keep_the_last_backends(tmp_path: Path) -> None:
    path = tmp_path / "backends.json"
    path.write_text(json.dumps(["http://a:1"]))
    service = Service("users", ["http://static:1"])
    events: list[Any] = []
    service.add_hook(events.append)
    service.attach(Discovery(service, FileProvider(path)))
    async with ml.Mesh([service]):
        assert addresses(service) == ["http://a:1"]
        path.write_text(json.dumps(["http://a:1", "http://b:1"]))
        await until(lambda: len(service.backends) == 2, "the watched change")
        changed = [e for e in events if isinstance(e, BackendsChanged)]
        assert changed[-1].added == ("http://b:1",)
        path.write_text("[not json")
        await until(lambda: any(isinstance(e, DiscoveryFailed) for e in events), "a failure")
        assert addresses(service) == ["http://a:1", "http://b:1"]
        path.write_text("[]")  # no backend at all is a failure too
        await until(lambda: sum(isinstance(e, DiscoveryFailed) for e in events) == 2,
                    "the empty list rejected")
        assert addresses(service) == ["http://a:1", "http://b:1"]
        path.write_text(json.dumps(["http://c:1"]))
        await until(lambda: any(isinstance(e, DiscoveryRecovered) for e in events),
                    "the recovery")
        assert addresses(service) == ["http://c:1"]


async def test_missing_file_at_start_keeps_the_static_backends(tmp_path: Path) -> None:
    path = tmp_path / "later.yaml"
    service = Service("users", ["http://static:1"])
    driver = Discovery(service, FileProvider(path), retry_interval=60)
    service.attach(driver)
    async with ml.Mesh([service]):
        assert addresses(service) == ["http://static:1"]
        assert driver.last_error is not None
        assert "FileNotFoundError" in driver.last_error
        path.write_text("- http://later:1\n")  # the watch notices even while failing
        await until(lambda: addresses(service) == ["http://later:1"], "the file to appear")


async def test_file_discovery_from_config(tmp_path: Path) -> None:
    (tmp_path / "backends.yaml").write_text("- http://f1:1\n- http://f2:1\n")
    config = tmp_path / "mesh.yaml"
    config.write_text("services:\n  users:\n    discovery: {type: file, path: backends.yaml}\n")
    mesh = ml.Mesh.from_config(str(config), environ={})
    async with mesh:
        assert addresses(mesh.service("users")) == ["http://f1:1", "http://f2:1"]
        (tmp_path / "backends.yaml").write_text("- http://f3:1\n")
        await until(lambda: addresses(mesh.service("users")) == ["http://f3:1"], "the change")


async def test_static_provider() -> None:
    answer = await StaticProvider(["http://a:1", Backend("http://b:1", weight=2)]).resolve()
    assert [b.address for b in answer.backends] == ["http://a:1", "http://b:1"]
    assert isinstance(StaticProvider("http://a:1"), DiscoveryProvider)


class Registry(BaseProvider):
    """A provider as a registry client would be: a TTL, duplicates, failures."""

    kind = "registry"

    def __init__(self, answers: list[Any], ttl: float = 0.05) -> None:
        self.answers = answers
        self.ttl = ttl
        self.calls = 0

    async def resolve(self) -> Resolution:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return Resolution(tuple(Backend(a) for a in answer), self.ttl)


async def test_custom_provider_with_duplicates_and_redaction() -> None:
    service = Service("users")
    events: list[Any] = []
    service.add_hook(events.append)
    registry = Registry([["http://a:1", "http://a:1", "http://b:1"],
                         ConnectionError("registry at pw=SECRET down")])
    driver = Discovery(service, registry, min_interval=0.01, retry_interval=0.01,
                       redact=lambda text: text.replace("SECRET", "***"))
    service.attach(driver)
    async with ml.Mesh([service]):
        assert addresses(service) == ["http://a:1", "http://b:1"]  # duplicates dropped
        await until(lambda: any(isinstance(e, DiscoveryFailed) for e in events), "a failure")
    failed = next(e for e in events if isinstance(e, DiscoveryFailed))
    assert failed.error == "ConnectionError: registry at pw=*** down"
    assert failed.provider == "registry"


def test_register_a_provider_for_config_files(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def make(addresses: list[str], ttl: float = 1.0) -> Registry:
        return Registry([addresses], ttl)

    # The registry is the process's: this test's kind must not reach the next tests
    # (their messages list the kinds there are).
    from meshlite.discovery import _provider

    monkeypatch.setattr(_provider, "_registry", dict(_provider._registry))
    register_provider("test-registry", make)
    assert "test-registry" in provider_kinds()
    config = tmp_path / "mesh.yaml"
    config.write_text("services:\n  users:\n    discovery: {type: test-registry, "
                      "addresses: ['http://r:1'], ttl: '2.5', interval: 10}\n")
    mesh = ml.Mesh.from_config(str(config), environ={})
    [driver] = [c for c in mesh.service("users").components if isinstance(c, Discovery)]
    assert isinstance(driver.provider, Registry)
    assert driver.provider.ttl == 2.5  # coerced by the factory's annotations
    assert driver.interval == 10.0
    config.write_text("services:\n  users:\n    discovery: {type: test-registry}\n")
    with pytest.raises(ml.ConfigError, match=r"services\.users\.discovery\.addresses: required"):
        ml.Mesh.from_config(str(config), environ={})


def test_driver_bad_arguments() -> None:
    service = Service("users")
    with pytest.raises(ml.ConfigError, match="Discovery: provider must be a discovery"):
        Discovery(service, object())  # type: ignore[arg-type]
    with pytest.raises(ml.ConfigError, match="Discovery: interval must be > 0"):
        Discovery(service, StaticProvider(), interval=0)
    with pytest.raises(ml.ConfigError, match="FileProvider: path must be a file path"):
        FileProvider("")


@pytest.mark.parametrize("backends", [None, 5, {"a": 1}])
def test_static_provider_refuses_what_is_not_a_list_of_backends(backends: object) -> None:
    with pytest.raises(ml.ConfigError, match="backends"):
        StaticProvider(backends)  # type: ignore[arg-type]


@pytest.mark.parametrize("backends", ["null", "5"])
def test_a_config_with_bad_static_backends_is_a_config_error(
        tmp_path: Path, backends: str) -> None:
    from meshlite.config import load_config

    path = tmp_path / "mesh.yaml"
    path.write_text(f"services:\n  users:\n    discovery: {{type: static, backends: {backends}}}\n",
                    encoding="utf-8")
    with pytest.raises(ml.ConfigError, match=r"services\.users\.discovery\.backends"):
        load_config(str(path))
