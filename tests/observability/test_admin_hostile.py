"""The admin API against what a request can carry: names decoded from the URL and an
address from ``X-Forwarded-For`` (uvicorn trusts it from loopback) must not forge log
lines or audit records, and silences must not pile up without end."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

import meshlite as ml
from meshlite._audit import AuditLog
from meshlite.observability._dashboard._silences import MAX_NAME, MAX_SILENCES

TOKEN = "admin-token-for-tests-0123456789"


def _unprintable(text: str) -> list[str]:
    return [c for c in text if not c.isprintable()]


async def _post_raw(url: str, target: bytes, headers: bytes) -> bytes:
    """The status line of a POST sent as bytes (httpx refuses non-ASCII headers)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                 b"Connection: close\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
                 + headers + b"\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer.split(b"\r\n", 1)[0]


async def test_names_from_the_url_and_a_forwarded_address_cannot_forge_log_lines(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="meshlite.dashboard")
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"],
                               pipeline=ml.Pipeline(ml.CircuitBreaker(name="db")))])
    mesh.audit = AuditLog(tmp_path / "audit.jsonl")
    server = await mesh.serve_dashboard(port=0, admin_token=TOKEN)
    try:
        forged = await _post_raw(
            server.url, b"/api/admin/services/x%0a2026-12-05%20CRITICAL%20forged%1b[2J"
            b"/breakers/1/reset", b"")
        spoofed = await _post_raw(server.url, b"/api/admin/services/users/breakers/1/reset",
                                  b"X-Forwarded-For: 10.0.0.9\x85forged\x9b2J\r\n")
    finally:
        await server.stop()
    assert (forged, spoofed) == (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK")
    lines = [r.getMessage() for r in caplog.records if r.name == "meshlite.dashboard"
             and "admin API" in r.getMessage()]
    assert len(lines) == 2
    assert [_unprintable(line) for line in lines] == [[], []]
    assert "x\\n2026-12-05 CRITICAL forged\\x1b[2J/breakers/1" in lines[0]  # readable
    assert "admin:10.0.0.9\\x85forged\\x9b2J" in lines[1]
    records = mesh.audit.read()
    assert [(_unprintable(r["actor"]), _unprintable(r["target"])) for r in records] == [
        ([], []), ([], [])]


async def test_silences_are_bounded_in_number_and_in_the_size_of_their_names() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"])])
    now = [1_000.0]
    silences = mesh.alerts.silences
    silences.monotonic = lambda: now[0]
    server = await mesh.serve_dashboard(port=0, admin_token=TOKEN)
    try:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, headers={
                "Authorization": f"Bearer {TOKEN}"}) as http:
            async def silence(**params: str) -> httpx.Response:
                return await http.post("/api/admin/silences",
                                       params={"seconds": "60", **params})

            long = await silence(rule="r" * (MAX_NAME + 1))
            newline = await silence(rule="errors\nforged")
            assert (long.status_code, newline.status_code) == (400, 400)
            assert "rule must be a non-empty printable string" in long.json()["error"]
            made = [await silence(rule=f"rule-{i}") for i in range(MAX_SILENCES)]
            assert {r.status_code for r in made} == {201}
            full = await silence(rule="one-more")
            assert full.status_code == 400
            assert f"{MAX_SILENCES} silences are in force already" in full.json()["error"]
            assert len(silences.active()) == MAX_SILENCES
            now[0] += 61  # they ended: room again
            assert (await silence(rule="after")).status_code == 201
            assert len(silences.active()) == 1
    finally:
        await server.stop()


async def test_numbers_in_other_scripts_or_of_thousands_of_digits_are_400_or_404() -> None:
    # "²" passes str.isdigit() and fails int(); 5,000 digits make int() raise: each
    # was a 500 with a traceback in the log, the history's even without a token.
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"],
                               pipeline=ml.Pipeline(ml.CircuitBreaker(name="db")))])
    server = await mesh.serve_dashboard(port=0, admin_token=TOKEN)
    try:
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, headers={
                "Authorization": f"Bearer {TOKEN}"}) as http:
            history = [(await http.get("/api/services/users/history",
                                       params={"seconds": value})).status_code
                       for value in ("²", "9" * 5000, "٣", "60")]
            breaker = await http.post("/api/admin/services/users/breakers/%C2%B2/reset")
            silence = await http.post("/api/admin/silences/%C2%B2/expire")
            huge = await http.post("/api/admin/silences/" + "9" * 5000 + "/expire")
    finally:
        await server.stop()
    assert history == [400, 400, 400, 200]
    assert (breaker.status_code, silence.status_code, huge.status_code) == (404, 404, 404)
    assert len(huge.json()["error"]) < 200  # the id is shown cut, not echoed whole

