"""DNS discovery while SRV targets come and go, against a real DNS server on loopback:
a target whose address record is missing (published late, or removed first) is left
out, not a reason to keep a stale set."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import meshlite as ml
from meshlite.discovery import Discovery, DiscoveryFailed, DnsProvider


def srv(server: Any) -> DnsProvider:
    return DnsProvider("_http._tcp.svc", record="SRV", nameservers=["127.0.0.1"],
                       nameserver_port=server.port, timeout=1.0)


def said(caplog: pytest.LogCaptureFixture, level: int, text: str) -> int:
    return sum(1 for r in caplog.records
               if r.name == "meshlite.discovery" and r.levelno == level
               and text in r.getMessage())


async def test_a_target_without_an_address_is_left_out(
        dns_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "meshlite.discovery")
    dns_server.glue = False  # each target is looked up
    dns_server.set("a.svc", "A", 60, "127.0.0.2")
    dns_server.set("b.svc", "A", 60, "127.0.0.3")
    dns_server.set("_http._tcp.svc", "SRV", 60, "0 1 8000 a.svc.")
    service = ml.Service("users")
    driver = Discovery(service, srv(dns_server))
    service.attach(driver)
    async with ml.Mesh([service]):
        assert [b.address for b in service.backends] == ["http://127.0.0.2:8000"]
        # Scaled up: b's records are out, and gone.svc is listed though its address
        # record was removed already (or is not published yet).
        dns_server.set("_http._tcp.svc", "SRV", 60, "0 1 8000 a.svc.",
                       "0 1 8001 b.svc.", "0 1 8002 gone.svc.")
        assert await driver.refresh()
        assert [b.address for b in service.backends] == ["http://127.0.0.2:8000",
                                                         "http://127.0.0.3:8001"]
        assert await driver.refresh()  # said once, not at every resolve
        assert said(caplog, logging.WARNING, "SRV target gone.svc has no address") == 1
        dns_server.set("gone.svc", "A", 60, "127.0.0.4")
        assert await driver.refresh()
        assert len(service.backends) == 3
        assert said(caplog, logging.INFO, "SRV target gone.svc has an address again") == 1


async def test_no_target_with_an_address_keeps_the_last_backends_and_names_them(
        dns_server: Any) -> None:
    dns_server.glue = False
    dns_server.set("a.svc", "A", 60, "127.0.0.2")
    dns_server.set("_http._tcp.svc", "SRV", 60, "0 1 8000 a.svc.")
    service = ml.Service("users")
    events: list[ml.Event] = []
    service.add_hook(events.append)
    driver = Discovery(service, srv(dns_server))
    service.attach(driver)
    async with ml.Mesh([service]):
        dns_server.set("_http._tcp.svc", "SRV", 60, "0 1 8001 x.svc.", "0 1 8002 y.svc.")
        assert not await driver.refresh()
        assert [b.address for b in service.backends] == ["http://127.0.0.2:8000"]
        failed = [e for e in events if isinstance(e, DiscoveryFailed)]
        assert "no target of the SRV record _http._tcp.svc has an address: x.svc, y.svc" \
            in failed[-1].error
