"""start_http_server's request log against a hostile request line (a real socket):
the server has no token, so anyone who reaches it writes the line."""

from __future__ import annotations

import logging
import socket

import pytest

import meshlite as ml
from meshlite.observability import start_http_server


def test_control_characters_in_a_request_line_are_escaped_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="meshlite.metrics")
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:1"])])
    with (start_http_server(mesh) as server,
          socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock):
        # backspaces erase what a terminal showed, \x1b[2J clears it, \x9b is the
        # C1 form of the escape (whitespace such as \r would end the path here)
        sock.sendall(b"GET /x" + b"\x08" * 6 + b"CRITICAL_forged\x1b[2J\x9b" + b"a" * 1000
                     + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 404")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "meshlite.metrics"]
    assert [c for c in line if not c.isprintable()] == []
    assert "/x" + "\\x08" * 6 + "CRITICAL_forged\\x1b[2J\\x9b" in line  # still readable
    assert len(line) < 400
