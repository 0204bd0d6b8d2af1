"""DNS discovery against a real DNS server on loopback: A/AAAA, SRV, re-resolution at
the record TTL, and failures that keep the last known backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.exception
import pytest

import meshlite as ml
from meshlite.discovery import Discovery, DiscoveryFailed, DiscoveryRecovered, DnsProvider
from meshlite.routing import Service

WAIT = 10.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def provider(server: Any, name: str, **kwargs: Any) -> DnsProvider:
    kwargs.setdefault("port", None if kwargs.get("record") == "SRV" else 8000)
    return DnsProvider(name, nameservers=["127.0.0.1"], nameserver_port=server.port,
                       timeout=1.0, **kwargs)


def addresses(service: Service) -> list[str]:
    return [b.address for b in service.backends]


async def test_a_records(dns_server: Any) -> None:
    dns_server.set("users.test", "A", 30, "127.0.0.1", "127.0.0.2")
    answer = await provider(dns_server, "users.test").resolve()
    assert [b.address for b in answer.backends] == ["http://127.0.0.1:8000",
                                                    "http://127.0.0.2:8000"]
    assert answer.ttl == 30.0


async def test_aaaa_and_both(dns_server: Any) -> None:
    dns_server.set("users.test", "A", 30, "127.0.0.1")
    dns_server.set("users.test", "AAAA", 20, "fd00::1")
    six = await provider(dns_server, "users.test", record="AAAA", scheme="https").resolve()
    assert [b.address for b in six.backends] == ["https://[fd00::1]:8000"]
    both = await provider(dns_server, "users.test", record="A+AAAA").resolve()
    assert [b.address for b in both.backends] == ["http://127.0.0.1:8000",
                                                  "http://[fd00::1]:8000"]
    assert both.ttl == 20.0  # the shortest TTL of the answers


@pytest.mark.parametrize("glue", [True, False])
async def test_srv_records(dns_server: Any, glue: bool) -> None:
    dns_server.glue = glue
    dns_server.set("_http._tcp.users.test", "SRV", 60,
                   "10 3 8001 a.users.test.", "10 1 8002 b.users.test.",
                   "20 1 8003 backup.users.test.")
    dns_server.set("a.users.test", "A", 40, "127.0.1.1")
    dns_server.set("b.users.test", "A", 50, "127.0.1.2")
    dns_server.set("backup.users.test", "A", 50, "127.0.1.3")
    answer = await provider(dns_server, "_http._tcp.users.test", record="SRV").resolve()
    # lowest priority only, SRV port and weight
    assert [(b.address, b.weight) for b in answer.backends] == [
        ("http://127.0.1.1:8001", 3.0), ("http://127.0.1.2:8002", 1.0)]
    assert answer.backends[0].metadata["target"] == "a.users.test"
    assert answer.ttl == 40.0
    assert dns_server.count("a.users.test", "A") == (0 if glue else 1)


async def test_unknown_name_raises(dns_server: Any) -> None:
    with pytest.raises(dns.exception.DNSException):
        await provider(dns_server, "nowhere.test").resolve()


def test_bad_arguments() -> None:
    with pytest.raises(ml.ConfigError, match="DnsProvider: port must be a port number"):
        DnsProvider("users.test")
    with pytest.raises(ml.ConfigError, match="DnsProvider: record must be one of"):
        DnsProvider("users.test", record="MX", port=1)
    with pytest.raises(ml.ConfigError, match="DnsProvider: nameservers must be IP"):
        DnsProvider("users.test", port=1, nameservers=["dns.google"])
    with pytest.raises(ml.ConfigError, match="port must be None for SRV"):
        DnsProvider("_x._tcp.users.test", record="SRV", port=80)


async def test_reresolved_at_the_ttl(dns_server: Any) -> None:
    dns_server.set("users.test", "A", 1, "127.0.0.1")
    service = Service("users", ["http://static:1"])
    driver = Discovery(service, provider(dns_server, "users.test"), min_interval=0.1)
    mesh = ml.Mesh([service])
    service.attach(driver)
    async with mesh:
        assert addresses(service) == ["http://127.0.0.1:8000"]  # resolved before open returns
        assert driver._delay() == 1.0  # the record's TTL
        dns_server.set("users.test", "A", 1, "127.0.0.1", "127.0.0.9")
        await until(lambda: len(service.backends) == 2, "re-resolution at the TTL")
        assert addresses(service) == ["http://127.0.0.1:8000", "http://127.0.0.9:8000"]
    assert dns_server.count("users.test", "A") >= 2


@pytest.mark.parametrize("mode", ["servfail", "drop"])
async def test_failure_keeps_the_last_backends(dns_server: Any, mode: str) -> None:
    dns_server.set("users.test", "A", 1, "127.0.0.1")
    service = Service("users")
    events: list[Any] = []
    service.add_hook(events.append)
    driver = Discovery(service, provider(dns_server, "users.test"), min_interval=0.05,
                       retry_interval=0.05)
    service.attach(driver)
    async with ml.Mesh([service]):
        assert addresses(service) == ["http://127.0.0.1:8000"]
        dns_server.mode = mode
        await until(lambda: any(isinstance(e, DiscoveryFailed) for e in events), "a failure")
        assert addresses(service) == ["http://127.0.0.1:8000"]
        failed = next(e for e in events if isinstance(e, DiscoveryFailed))
        assert failed.provider == "dns"
        assert failed.service == "users"
        assert failed.backends == ("http://127.0.0.1:8000",)
        assert driver.last_error is not None
        dns_server.mode = "answer"
        dns_server.set("users.test", "A", 1, "127.0.0.2")
        await until(lambda: any(isinstance(e, DiscoveryRecovered) for e in events),
                    "the recovery")
        assert addresses(service) == ["http://127.0.0.2:8000"]
        assert driver.last_error is None


async def test_dns_discovery_from_config(dns_server: Any, tmp_path: Path) -> None:
    dns_server.set("users.test", "A", 1, "127.0.0.7")
    path = tmp_path / "mesh.yaml"
    path.write_text(f"""
services:
  users:
    backends: ["http://fallback:1"]
    discovery:
      type: dns
      name: users.test
      port: 8080
      nameservers: ["127.0.0.1"]
      nameserver_port: {dns_server.port}
""")
    mesh = ml.Mesh.from_config(str(path), environ={})
    assert addresses(mesh.service("users")) == ["http://fallback:1"]  # until opened
    async with mesh:
        assert addresses(mesh.service("users")) == ["http://127.0.0.7:8080"]
