"""What a client writes into ``X-Forwarded-For`` under a real uvicorn server (which
trusts it from loopback by default, as from a proxy in front): it becomes the
request's address, so it must not forge log or audit lines, nor make quota keys,
audit entries and the dashboard's feed as large as a request head."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from _raw_http import raw_get
from test_policies import echo

import meshlite as ml
from meshlite.asgi import Auth, Inbound, MeshMiddleware, Route
from meshlite.testing import AsgiServer

FORGED = b"10.0.0.1\x9b2J\x85 2026-12-05 CRITICAL forged\xe2\x80\xae"
"""Latin-1 as the server decodes it: the C1 CSI (a terminal escape), NEL (a line
break to many readers) and the bytes of a right-to-left override."""


def _unprintable(text: str) -> list[str]:
    return [c for c in text if not c.isprintable()]


async def test_a_forged_forwarded_address_cannot_forge_audit_lines(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="meshlite.inbound.audit")
    log = ml.AuditLog(tmp_path / "audit.jsonl")
    middleware = MeshMiddleware(echo, trace=False, audit=log,
                                auth=Auth(api_keys={"k" * 20: ("alice", [])}))
    async with AsgiServer(middleware) as server:
        status = await raw_get(server.url, b"/", b"x-api-key: bad\r\nx-forwarded-for: "
                           + FORGED + b"\r\n")
    assert status == b"HTTP/1.1 401 Unauthorized"
    (record,) = [r for r in caplog.records if r.name == "meshlite.inbound.audit"]
    line = record.getMessage()
    assert _unprintable(line) == []
    assert "ip:10.0.0.1\\x9b2J\\x85 2026-12-05 CRITICAL forged" in line  # still readable
    assert _unprintable(record.meshlite_client) == []
    (entry,) = log.read()
    assert _unprintable(entry["actor"]) == []
    (fed,) = middleware.refusals.drain(1)
    assert [_unprintable(c) for c in fed["top"]] == [[]]


async def test_a_huge_forwarded_address_is_cut_in_quota_keys_and_records(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="meshlite.inbound.audit")
    keys: list[str] = []

    def key(request: Inbound) -> str:
        keys.append(request.client)
        return request.client

    middleware = MeshMiddleware(echo, trace=False, routes=[
        Route("/", rate=1.0, burst=1, key=key)])
    huge = b"10.0.0.1" + b"9" * 60_000  # one "address", no comma: uvicorn keeps it whole
    async with AsgiServer(middleware) as server:
        statuses = [await raw_get(server.url, b"/", b"x-forwarded-for: " + huge + b"\r\n")
                    for _ in range(2)]
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 429 Too Many Requests"]
    assert len(keys) == 2
    assert max(map(len, keys)) < 100  # not 60 KB per remembered client
    (record,) = [r for r in caplog.records if r.name == "meshlite.inbound.audit"]
    assert len(record.getMessage()) < 400
