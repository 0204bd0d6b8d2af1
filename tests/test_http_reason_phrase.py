"""A backend's reason phrase, which it writes as it likes, reaches the caller and the
``httpx`` INFO line of ``mesh.http()``: it must neither make the request raise nor
write terminal escapes into the log. A real loopback server answering raw bytes."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest

import meshlite as ml

REASON = b"OK \xe2\x9c\x93 \x9b2J \x1b[2J\x08\x08forged"
"""UTF-8 ("✓"), a stray byte (the C1 CSI), a terminal escape and backspaces."""


@pytest.fixture
def backend() -> Iterator[str]:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)  # so that the loop sees ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:  # the timeout, or the socket closed
                continue
            conn.settimeout(5)
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 " + REASON + b"\r\nContent-Length: 2\r\n"
                             b"Connection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(5)
    sock.close()


def _http_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "httpx" and "HTTP Request" in r.getMessage()]


async def test_an_odd_reason_phrase_neither_raises_nor_forges_the_log_line(
        backend: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    async with ml.Mesh([ml.Service("odd", [backend])]) as mesh:
        r = await mesh.http("odd").get("/x")  # raised UnicodeEncodeError
    assert (r.status_code, r.text) == (200, "ok")
    assert r.reason_phrase.startswith("OK ")  # httpx keeps the ASCII of it
    (line,) = _http_lines(caplog)
    assert [c for c in line if not c.isprintable()] == []
    assert '"HTTP/1.1 200 OK' in line
    assert "\\x1b[2J\\x08\\x08forged" in line  # escaped, still readable


def test_the_sync_client_too(backend: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    with ml.Mesh([ml.Service("odd", [backend])]) as mesh:
        r = mesh.http_sync("odd").get("/x")
    assert (r.status_code, r.text) == (200, "ok")
    (line,) = _http_lines(caplog)
    assert [c for c in line if not c.isprintable()] == []
