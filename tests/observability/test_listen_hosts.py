"""Where a server of meshlite's listens (the metrics server, the dashboard): an IP
address or a host name. A URL, ``host:port`` or a malformed address is a
``ConfigError`` naming the argument when it is given (and ``meshlite check`` refuses it
in a config), not a ``socket.gaierror`` from the bind blaming the port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.cli import main
from meshlite.config._check import EXIT_INVALID

BAD = ["http://127.0.0.1", "127.0.0.1:9000", "999.1.1.1", "exa mple", "[::1]", "", None]
GOOD = ["127.0.0.1", "localhost", "::1", "0.0.0.0"]


def _mesh() -> ml.Mesh:
    return ml.Mesh([ml.Service("users", ["127.0.0.1:9"])])


@pytest.mark.parametrize("host", BAD)
def test_the_metrics_server_refuses_a_malformed_host(host: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"^start_http_server: host must be an IP "
                                             r"address or host name \(no scheme, port"):
        ml.telemetry.start_http_server(_mesh(), host=host)


@pytest.mark.parametrize("host", GOOD)
def test_the_metrics_server_listens_on_a_well_formed_host(host: str) -> None:
    with ml.telemetry.start_http_server(_mesh(), host=host) as server:
        assert server.port > 0


@pytest.mark.parametrize("host", BAD)
async def test_the_dashboard_refuses_a_malformed_host(host: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"^serve_dashboard: host must be an IP "):
        await _mesh().serve_dashboard(host=host, port=0, token="t" * 32)


def test_check_refuses_a_malformed_dashboard_host(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text('services: {users: {backends: ["127.0.0.1:9"]}}\n'
                      'dashboard: {host: "999.1.1.1", port: 0, token: "' + "t" * 32 + '"}\n')
    assert main(["check", str(config)]) == EXIT_INVALID
    shown: Any = capsys.readouterr()
    assert "dashboard.host: must be an IP address or host name" in shown.out + shown.err
