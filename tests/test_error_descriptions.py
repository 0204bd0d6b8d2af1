"""How errors read where an operator meets them: the Retry note on the raised error, a
Hedge's, an ejection's reason (its log line, event and dashboard entry), a health
probe's. Every error is shown as ``Type('message')``; an aiohttp connection error's own
repr is eight fields of its connection key and no message."""

from __future__ import annotations

import socket

import aiohttp
import httpx
import pytest

import meshlite as ml
from meshlite._printable import MAX_DESCRIBED, described
from meshlite.routing._events import BackendEjected, HealthCheckFailed


def _closed_port() -> str:
    # A loopback port nothing listens on: connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_an_error_reads_as_its_type_and_message() -> None:
    assert described(ConnectionError("reset by peer")) == "ConnectionError('reset by peer')"
    assert described(ConnectionError("x")) == repr(ConnectionError("x"))  # as before
    assert described(ConnectionRefusedError(111, "refused")) == (
        "ConnectionRefusedError('[Errno 111] refused')")
    assert described(TimeoutError()) == "TimeoutError()"
    assert described(KeyError("users")) == "KeyError('users')" == repr(KeyError("users"))
    assert described(_Unprintable()) == "_Unprintable(...)"
    assert described(ValueError("a\nforged line\x1b[2J")) == (
        "ValueError('a\\nforged line\\x1b[2J')")
    long = described(ValueError("x" * 1000))
    assert long == f"ValueError('{'x' * MAX_DESCRIBED}...')"


async def test_an_aiohttp_requests_notes_and_ejections_name_the_backend_and_the_cause() -> None:
    dead = [_closed_port(), _closed_port()]
    seen: list[BackendEjected] = []
    service = ml.Service("users", dead,
                         outlier_detection=ml.OutlierDetection(consecutive_failures=1))
    async with ml.Mesh([service]) as mesh:
        mesh.add_hook(lambda event: seen.append(event) if isinstance(
            event, BackendEjected) else None)
        async with mesh.aiohttp("users") as session:
            with pytest.raises(aiohttp.ClientConnectorError) as raised:
                await session.get("/")
    notes = "\n".join(getattr(raised.value, "__notes__", ()))
    assert "2 attempts failed: #1 ClientConnectorError(" in notes
    assert "ConnectionKey(" not in notes  # (the repr's first field)
    for address in dead:  # each attempt's backend and cause, in full
        assert f"backend {address}: Connect call failed" in notes
    assert seen  # (one of two: outlier detection ejects at most half)
    for event in seen:
        assert event.reason.startswith("1 consecutive failures (last: ClientConnectorError(")
        assert f"backend {event.address}: Connect call failed" in event.reason
        assert "ConnectionKey(" not in event.reason


async def test_a_hedges_note_and_a_probes_reason_read_the_same_way() -> None:
    def refused(backend: ml.Backend) -> bool:
        raise ConnectionRefusedError(111, f"refused by {backend.address}")

    reasons: list[str] = []
    check = ml.HealthCheck(refused, interval=60.0, unhealthy_threshold=1)
    mesh = ml.Mesh([ml.Service("users", ["a:1"], health_check=check)])
    mesh.add_hook(lambda event: reasons.append(event.reason) if isinstance(
        event, HealthCheckFailed) else None)
    async with mesh:  # the first round of probes runs before the mesh takes calls
        assert reasons == ["probe raised ConnectionRefusedError('[Errno 111] refused by a:1')"]

    async def fails() -> None:
        raise ConnectionRefusedError(111, "refused")

    hedged = ml.Pipeline(ml.Hedge(delay=0.0, max_hedges=1))
    with pytest.raises(ConnectionRefusedError) as raised:
        await hedged.acall(fails)
    assert "primary: ConnectionRefusedError('[Errno 111] refused')" in "\n".join(
        raised.value.__notes__)


def test_a_sync_requests_connection_error_reads_as_httpxs_does() -> None:
    dead = _closed_port()
    with ml.Mesh([ml.Service("users", [dead], pipeline=ml.Pipeline())]) as mesh, \
            mesh.http_sync("users") as client, pytest.raises(httpx.ConnectError) as raised:
        client.get("/")
    # (urllib3 heads it with its connection object, "_Connection(host=..., port=...)")
    text = str(raised.value)
    assert text.startswith(f"service 'users', backend {dead}: Failed to establish a new "
                           "connection: [Errno ")
    assert text.endswith("] Connection refused")
